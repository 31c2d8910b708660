# Compiler settings. Warnings are always on; they become errors only with MP_WERROR (the
# presets and CI), never in a user's or a distribution's build.
if(MSVC)
  if(CMAKE_VERSION VERSION_LESS 3.21)
    message(FATAL_ERROR "multiproc with MSVC needs CMake 3.21 or newer (for /std:c11)")
  endif()
  add_compile_options(/W4 /utf-8 $<$<BOOL:${MP_WERROR}>:/WX>
    # <stdatomic.h> (lock-free atomics only; src/compat.h checks the compiler version).
    /experimental:c11atomics)
  # The CRT's "unsafe function" warnings (strncpy, getenv, ...) ask for the *_s functions,
  # which are not portable; multiproc bounds its buffers itself.
  add_compile_definitions(_CRT_SECURE_NO_WARNINGS)
else()
  add_compile_options(-Wall -Wextra -Wvla $<$<BOOL:${MP_WERROR}>:-Werror>)
endif()
if(MINGW)
  # C99 printf (%zu, %lld) from mingw-w64's own stdio rather than msvcrt's.
  add_compile_definitions(__USE_MINGW_ANSI_STDIO=1)
endif()

if(MP_SANITIZE AND MP_TSAN)
  message(FATAL_ERROR "MP_TSAN and MP_SANITIZE cannot be combined")
endif()
if(MP_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
endif()
if(MP_FUZZ)
  if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "MP_FUZZ needs clang (libFuzzer): configure with CC=clang or the fuzz preset")
  endif()
  # The library carries coverage for libFuzzer; each fuzz_<name> links the fuzzer's main.
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
                      -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
endif()
if(MP_TSAN)
  add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
  add_link_options(-fsanitize=thread)
endif()
