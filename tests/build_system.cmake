# Build-system checks, each a configure (and at most a tiny build) in a scratch folder:
#  1. on a system nobody has tested, configuring fails with a clear message;
#  2. BUILD_TESTING=OFF is honoured (no tests, cmocka not looked for, no unused-variable
#     warning);
#  3. a parent project that adds multiproc with add_subdirectory gets the library and nothing
#     else: no tests, no examples, no tools, no install rules, no cmocka, and its own BUILD_TESTING
#     does not turn multiproc's tests on;
#  4. warnings are errors only with MP_WERROR.
string(REPLACE "|" ";" MP_PREFIX_PATH "${MP_PREFIX_PATH}") # tests/CMakeLists.txt joined it
function(configure label expect_rc)
  set(dir ${MP_WORK_DIR}/${label})
  file(REMOVE_RECURSE ${dir})
  execute_process(COMMAND ${CMAKE_COMMAND} -G "${MP_GENERATOR}" -B ${dir} ${ARGN}
    "-DCMAKE_PREFIX_PATH=${MP_PREFIX_PATH}"
    RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if((expect_rc EQUAL 0 AND NOT rc EQUAL 0) OR (NOT expect_rc EQUAL 0 AND rc EQUAL 0))
    message(FATAL_ERROR "${label}: configure exited ${rc}, expected ${expect_rc}\n${out}\n${err}")
  endif()
  set(out "${out}\n${err}" PARENT_SCOPE)
  set(dir ${dir} PARENT_SCOPE)
endfunction()

function(expect label what text haystack)
  string(FIND "${haystack}" "${text}" at)
  if(what STREQUAL "has" AND at EQUAL -1)
    message(FATAL_ERROR "${label}: expected \"${text}\" in:\n${haystack}")
  elseif(what STREQUAL "lacks" AND NOT at EQUAL -1)
    message(FATAL_ERROR "${label}: did not expect \"${text}\" in:\n${haystack}")
  endif()
endfunction()

# 1. An untested system (the host compiler, told it targets FreeBSD).
configure(untested 1 -S ${MP_SOURCE_DIR} -DCMAKE_SYSTEM_NAME=FreeBSD)
expect(untested has "multiproc has not been tested on FreeBSD" "${out}")

# 2. BUILD_TESTING=OFF at the top level.
configure(no_testing 0 -S ${MP_SOURCE_DIR} -DBUILD_TESTING=OFF)
file(READ ${dir}/CMakeCache.txt cache)
expect(no_testing lacks "CMOCKA_INCLUDE_DIR" "${cache}")
expect(no_testing lacks "not used by the project" "${out}")
if(EXISTS ${dir}/tests)
  message(FATAL_ERROR "no_testing: the tests were configured although BUILD_TESTING=OFF")
endif()
expect(no_testing has "MP_BUILD_EXAMPLES:BOOL=ON" "${cache}")

# 3. add_subdirectory from a parent that has tests of its own (BUILD_TESTING on).
set(parent ${MP_WORK_DIR}/parent-src)
file(MAKE_DIRECTORY ${parent})
file(WRITE ${parent}/CMakeLists.txt "cmake_minimum_required(VERSION 3.13)
project(parent LANGUAGES C)
include(CTest)
add_subdirectory(\"${MP_SOURCE_DIR}\" multiproc)
file(WRITE \${CMAKE_BINARY_DIR}/app.c \"#include <multiproc.h>\\nint main(void) { return mp_version()[0] == 0; }\\n\")
add_executable(app \${CMAKE_BINARY_DIR}/app.c)
target_link_libraries(app PRIVATE multiproc::multiproc)
")
configure(subproject 0 -S ${parent})
file(READ ${dir}/CMakeCache.txt cache)
expect(subproject lacks "CMOCKA_INCLUDE_DIR" "${cache}")
expect(subproject has "MP_BUILD_TESTS:BOOL=OFF" "${cache}")
expect(subproject has "MP_BUILD_EXAMPLES:BOOL=OFF" "${cache}")
expect(subproject has "MP_INSTALL:BOOL=OFF" "${cache}")
expect(subproject has "MP_BUILD_TOOLS:BOOL=OFF" "${cache}")
foreach(sub tests examples tools)
  if(EXISTS ${dir}/multiproc/${sub})
    message(FATAL_ERROR "subproject: multiproc's ${sub} were configured in a parent project")
  endif()
endforeach()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${dir} --target app RESULT_VARIABLE rc
  OUTPUT_VARIABLE bout ERROR_VARIABLE berr)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "subproject: building the parent's program failed\n${bout}\n${berr}")
endif()
if(EXISTS ${dir}/multiproc/cmake_install.cmake)
  file(READ ${dir}/multiproc/cmake_install.cmake inst)
  expect(subproject lacks "multiproc.pc" "${inst}")
endif()

# 4. -Werror only with MP_WERROR (GCC/Clang spelling; MSVC's /WX is set the same way).
configure(werror_off 0 -S ${MP_SOURCE_DIR} -DBUILD_TESTING=OFF -DMP_BUILD_EXAMPLES=OFF
          -DCMAKE_EXPORT_COMPILE_COMMANDS=ON)
file(READ ${dir}/compile_commands.json cc)
expect(werror_off lacks "-Werror" "${cc}")
expect(werror_off has "-Wall" "${cc}")
configure(werror_on 0 -S ${MP_SOURCE_DIR} -DBUILD_TESTING=OFF -DMP_BUILD_EXAMPLES=OFF
          -DCMAKE_EXPORT_COMPILE_COMMANDS=ON -DMP_WERROR=ON)
file(READ ${dir}/compile_commands.json cc)
expect(werror_on has "-Werror" "${cc}")
message(STATUS "build-system checks passed")
