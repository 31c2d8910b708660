# Cross-compile for 64-bit Windows with Debian's clang (--target=x86_64-w64-mingw32) and the
# mingw-w64 headers and import libraries, linking with lld; tests run under Wine as in the
# GCC leg, whose settings this file reuses. Debian 12 needs: clang, lld, mingw-w64 (headers,
# CRT, binutils) and gcc-mingw-w64-x86-64-win32 for libgcc, which Debian's clang does not
# find by itself (it looks for a plain version directory under /usr/lib/gcc/<triple>, and
# Debian names them "12-win32" and "12-posix").
include(${CMAKE_CURRENT_LIST_DIR}/mingw-w64.cmake)
set(CMAKE_C_COMPILER clang)
set(CMAKE_C_COMPILER_TARGET ${MINGW_TRIPLE})
set(CMAKE_CXX_COMPILER clang++)
set(CMAKE_CXX_COMPILER_TARGET ${MINGW_TRIPLE})
execute_process(COMMAND ${MINGW_TRIPLE}-gcc -print-libgcc-file-name
  OUTPUT_VARIABLE mp_libgcc OUTPUT_STRIP_TRAILING_WHITESPACE RESULT_VARIABLE mp_rc)
if(NOT mp_rc EQUAL 0 OR NOT EXISTS "${mp_libgcc}")
  message(FATAL_ERROR "clang-mingw-w64: ${MINGW_TRIPLE}-gcc (package gcc-mingw-w64-x86-64-win32) "
                      "is needed for its libgcc")
endif()
get_filename_component(mp_libgcc_dir "${mp_libgcc}" DIRECTORY)
set(CMAKE_EXE_LINKER_FLAGS_INIT "-fuse-ld=lld -L${mp_libgcc_dir}")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-fuse-ld=lld -L${mp_libgcc_dir}")
set(CMAKE_MODULE_LINKER_FLAGS_INIT "-fuse-ld=lld -L${mp_libgcc_dir}")
