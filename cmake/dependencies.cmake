# The libraries multiproc links privately, in MP_PRIVATE_LIBS, and what the installed CMake
# package and .pc file must say about them (MP_MSGPACK_PACKAGE, MP_PC_REQUIRES_PRIVATE,
# MP_PC_LIBS_PRIVATE).

# msgpack-c renamed everything in 6.0: the CMake package msgpack -> msgpack-c, the targets
# msgpackc[-static] -> msgpack-c[-static], libmsgpackc -> libmsgpack-c, msgpack.pc ->
# msgpack-c.pc. Either is accepted; the newer names win when both are installed.
find_package(msgpack-c CONFIG QUIET)
if(msgpack-c_FOUND)
  set(MP_MSGPACK_PACKAGE msgpack-c)
  set(mp_msgpack_shared msgpack-c)
  set(mp_msgpack_static msgpack-c-static)
  set(MP_MSGPACK_PC msgpack-c)
else()
  find_package(msgpack CONFIG QUIET)
  if(NOT msgpack_FOUND)
    message(FATAL_ERROR "multiproc needs msgpack-c, 4.x (CMake package 'msgpack'; Debian 12: "
      "libmsgpack-dev) or 6.x and later (CMake package 'msgpack-c'; Debian 13: "
      "libmsgpack-c-dev). Install one, or point CMAKE_PREFIX_PATH at it.")
  endif()
  set(MP_MSGPACK_PACKAGE msgpack)
  set(mp_msgpack_shared msgpackc)
  set(mp_msgpack_static msgpackc-static)
  set(MP_MSGPACK_PC msgpack)
endif()
# A shared multiproc links msgpack-c's shared library, a static one its static library,
# whichever of the two the installation has when it lacks the other.
if(BUILD_SHARED_LIBS)
  set(mp_msgpack_order ${mp_msgpack_shared} ${mp_msgpack_static})
else()
  set(mp_msgpack_order ${mp_msgpack_static} ${mp_msgpack_shared})
endif()
foreach(t ${mp_msgpack_order})
  if(TARGET ${t})
    set(MP_MSGPACK_TARGET ${t})
    break()
  endif()
endforeach()
if(NOT MP_MSGPACK_TARGET)
  message(FATAL_ERROR "the ${MP_MSGPACK_PACKAGE} CMake package defines neither "
                      "${mp_msgpack_shared} nor ${mp_msgpack_static}")
endif()
message(STATUS "multiproc: msgpack-c from CMake package ${MP_MSGPACK_PACKAGE}, target ${MP_MSGPACK_TARGET}")

set(MP_PRIVATE_LIBS ${MP_MSGPACK_TARGET})
set(MP_PC_REQUIRES_PRIVATE ${MP_MSGPACK_PC})
if(WIN32)
  list(APPEND MP_PRIVATE_LIBS bcrypt ws2_32 advapi32)
  set(MP_PC_LIBS_PRIVATE "-lbcrypt -lws2_32 -ladvapi32")
else()
  find_package(OpenSSL REQUIRED COMPONENTS Crypto)
  set(THREADS_PREFER_PTHREAD_FLAG ON)
  find_package(Threads REQUIRED)
  list(APPEND MP_PRIVATE_LIBS OpenSSL::Crypto Threads::Threads ${CMAKE_DL_LIBS})
  list(APPEND MP_PC_REQUIRES_PRIVATE libcrypto)
  list(TRANSFORM CMAKE_DL_LIBS PREPEND "-l" OUTPUT_VARIABLE mp_dl)
  string(JOIN " " MP_PC_LIBS_PRIVATE -pthread ${mp_dl})
endif()
include(${CMAKE_CURRENT_LIST_DIR}/redis.cmake) # optional: hiredis for Redis-backed queues
string(JOIN ", " MP_PC_REQUIRES_PRIVATE ${MP_PC_REQUIRES_PRIVATE})
