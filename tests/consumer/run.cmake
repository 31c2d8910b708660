# Installs the build tree into a scratch prefix, builds tests/consumer against it with
# find_package (and pkg-config on native builds), and runs the results. MP_STATIC says
# whether this build made the static library (pkg-config then links with --static).
string(REPLACE "|" ";" MP_PREFIX_PATH "${MP_PREFIX_PATH}") # tests/CMakeLists.txt joined it
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

set(prefix ${MP_WORK_DIR}/prefix)
set(cbuild ${MP_WORK_DIR}/consumer)
file(REMOVE_RECURSE ${MP_WORK_DIR})
file(MAKE_DIRECTORY ${MP_WORK_DIR})
run(${CMAKE_COMMAND} --install ${MP_BUILD_DIR} --prefix ${prefix})
# A list cannot cross execute_process intact, so the prefix path goes in a cache script.
file(WRITE ${MP_WORK_DIR}/init.cmake
     "set(CMAKE_PREFIX_PATH \"${prefix};${MP_PREFIX_PATH}\" CACHE STRING \"\")\n")
set(args -S ${MP_SOURCE_DIR}/tests/consumer -B ${cbuild} -G "${MP_GENERATOR}"
         -C ${MP_WORK_DIR}/init.cmake -DMP_STATIC=${MP_STATIC})
if(MP_TOOLCHAIN)
  list(APPEND args -DCMAKE_TOOLCHAIN_FILE=${MP_TOOLCHAIN})
endif()
# pkg-config finds multiproc.pc here and, through Requires.private, its dependencies' .pc
# files in the other prefixes (a msgpack-c built for this leg, say).
set(pc_path ${prefix}/lib/pkgconfig)
foreach(p ${MP_PREFIX_PATH})
  list(APPEND pc_path ${p}/lib/pkgconfig)
endforeach()
string(REPLACE ";" ":" pc_path "${pc_path}")
set(ENV{PKG_CONFIG_PATH} "${pc_path}")
run(${CMAKE_COMMAND} ${args})
run(${CMAKE_COMMAND} --build ${cbuild})
foreach(exe consumer_cmake consumer_pkgconfig)
  if(EXISTS ${cbuild}/${exe}.exe)
    run(${MP_EMULATOR} ${cbuild}/${exe}.exe)
  elseif(EXISTS ${cbuild}/${exe})
    set(ENV{LD_LIBRARY_PATH} "${prefix}/lib")
    run(${cbuild}/${exe})
  elseif(exe STREQUAL consumer_cmake OR (NOT MP_TOOLCHAIN))
    message(FATAL_ERROR "${exe} was not built")
  endif()
endforeach()
