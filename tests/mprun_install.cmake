# `cmake --install` puts mprun and its man page in place, and the installed program runs.
# -DMP_BUILD_DIR=... -DMP_WORK_DIR=... -DMP_LIBDIR=lib [-DMP_EMULATOR=wine] [-DMP_EXE_SUFFIX=.exe]
set(prefix ${MP_WORK_DIR}/prefix)
file(REMOVE_RECURSE ${MP_WORK_DIR})
execute_process(COMMAND ${CMAKE_COMMAND} --install ${MP_BUILD_DIR} --prefix ${prefix}
  RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cmake --install failed (${rc}): ${err}")
endif()
set(exe ${prefix}/bin/mprun${MP_EXE_SUFFIX})
foreach(f ${exe} ${prefix}/share/man/man1/mprun.1)
  if(NOT EXISTS ${f})
    message(FATAL_ERROR "not installed: ${f}")
  endif()
endforeach()
# A shared build's mprun finds the library in the prefix as the consumer test's programs do.
set(ENV{LD_LIBRARY_PATH} "${prefix}/${MP_LIBDIR}")
execute_process(COMMAND ${MP_EMULATOR} ${exe} --version RESULT_VARIABLE rc OUTPUT_VARIABLE out)
if(NOT rc EQUAL 0 OR NOT out MATCHES "^mprun [0-9]")
  message(FATAL_ERROR "the installed mprun did not run (${rc}): ${out}")
endif()
message(STATUS "installed and ran: ${out}")
file(REMOVE_RECURSE ${MP_WORK_DIR})
