# Installs the build tree into a scratch prefix, builds tests/consumer against it with
# find_package (and pkg-config on native builds), runs the results, and on native Linux
# repeats the whole thing for a shared-library build of multiproc.
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  message(STATUS "${out}")
endfunction()

function(consume label build_dir static)
  set(prefix ${MP_WORK_DIR}/${label}/prefix)
  set(cbuild ${MP_WORK_DIR}/${label}/consumer)
  file(REMOVE_RECURSE ${MP_WORK_DIR}/${label})
  file(MAKE_DIRECTORY ${MP_WORK_DIR}/${label})
  run(${CMAKE_COMMAND} --install ${build_dir} --prefix ${prefix})
  # A list cannot cross execute_process intact, so the prefix path goes in a cache script.
  file(WRITE ${MP_WORK_DIR}/${label}/init.cmake
       "set(CMAKE_PREFIX_PATH \"${prefix};${MP_PREFIX_PATH}\" CACHE STRING \"\")\n")
  set(args -S ${MP_SOURCE_DIR}/tests/consumer -B ${cbuild} -G "${MP_GENERATOR}"
           -C ${MP_WORK_DIR}/${label}/init.cmake -DMP_STATIC=${static})
  if(MP_TOOLCHAIN)
    list(APPEND args -DCMAKE_TOOLCHAIN_FILE=${MP_TOOLCHAIN})
  endif()
  # pkg-config finds multiproc's dependencies built for this leg (hiredis) where they are.
  set(pc_path "${prefix}/lib/pkgconfig")
  foreach(dep ${MP_PREFIX_PATH})
    string(APPEND pc_path ":${dep}/lib/pkgconfig")
  endforeach()
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
endfunction()

consume(static ${MP_BUILD_DIR} ON)

if(NOT MP_TOOLCHAIN)
  set(shared_build ${MP_WORK_DIR}/shared-build)
  run(${CMAKE_COMMAND} -S ${MP_SOURCE_DIR} -B ${shared_build} -G "${MP_GENERATOR}"
      -DBUILD_SHARED_LIBS=ON -DMP_BUILD_TESTS=OFF -DMP_BUILD_EXAMPLES=OFF
      "-DCMAKE_PREFIX_PATH=${MP_PREFIX_PATH}")
  run(${CMAKE_COMMAND} --build ${shared_build})
  consume(shared ${shared_build} OFF)
endif()
