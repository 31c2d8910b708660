# Chooses the backend (src/posix or src/win32) from the target system. Linux and Windows are
# tested; any other system fails here with a clear message instead of silently compiling
# the Linux-flavoured POSIX backend. Porters can opt in with MP_UNTESTED_SYSTEM=ON.
option(MP_UNTESTED_SYSTEM "Try the POSIX backend on a system other than Linux (untested)" OFF)

if(WIN32 AND NOT CYGWIN)
  set(MP_BACKEND win32)
  set(MP_BACKEND_DEFINITIONS UNICODE _UNICODE WIN32_LEAN_AND_MEAN _WIN32_WINNT=0x0A00)
elseif(CMAKE_SYSTEM_NAME STREQUAL "Linux" OR MP_UNTESTED_SYSTEM)
  set(MP_BACKEND posix)
  set(MP_BACKEND_DEFINITIONS _GNU_SOURCE)
  if(MP_PORTABLE_POSIX)
    # src/posix/features.h: no Linux-only calls, so that a CI leg runs every fallback.
    list(APPEND MP_BACKEND_DEFINITIONS MP_PORTABLE_POSIX)
  endif()
  if(NOT CMAKE_SYSTEM_NAME STREQUAL "Linux")
    message(WARNING "multiproc: building the POSIX backend for ${CMAKE_SYSTEM_NAME}, where it "
                    "has never been tested (MP_UNTESTED_SYSTEM=ON)")
  endif()
else()
  message(FATAL_ERROR
    "multiproc has not been tested on ${CMAKE_SYSTEM_NAME}: it is built and tested on Linux "
    "and on Windows 10+ (mingw-w64). To try the POSIX backend anyway, configure with "
    "-DMP_UNTESTED_SYSTEM=ON, and please report what works and what does not.")
endif()
