# Redis support (docs/redis.md): hiredis >= 1.0 as a CMake package (scripts/dev builds
# Debian 13's 1.2.0 into build/deps-*/install for every leg); hiredis_ssl and OpenSSL give
# rediss://. Without hiredis the library still builds and the Redis calls say MP_ENOTSUP.
# Sets MP_HAVE_REDIS, MP_HAVE_REDIS_TLS and MP_REDIS_SOURCES (the files to compile, including
# the embedded Lua script), and appends to MP_PRIVATE_LIBS / MP_PC_REQUIRES_PRIVATE.
set(MP_HAVE_REDIS OFF)
set(MP_HAVE_REDIS_TLS OFF)
if(NOT MP_WITH_REDIS STREQUAL "OFF")
  find_package(hiredis 1.0 CONFIG QUIET)
  if(hiredis_FOUND)
    set(MP_HAVE_REDIS ON)
    find_package(hiredis_ssl CONFIG QUIET) # it installs no version file
    find_package(OpenSSL QUIET COMPONENTS SSL Crypto)
    if(hiredis_ssl_FOUND AND OpenSSL_FOUND)
      set(MP_HAVE_REDIS_TLS ON)
    endif()
  elseif(MP_WITH_REDIS STREQUAL "ON")
    message(FATAL_ERROR "MP_WITH_REDIS=ON but no hiredis >= 1.0 CMake package was found "
                        "(cmake/build-linux-deps.sh builds one; set CMAKE_PREFIX_PATH)")
  endif()
endif()
message(STATUS "multiproc: Redis queues ${MP_HAVE_REDIS} (TLS ${MP_HAVE_REDIS_TLS})")

file(GLOB MP_REDIS_SOURCES CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/redis_*.c)
if(MP_HAVE_REDIS)
  list(REMOVE_ITEM MP_REDIS_SOURCES ${PROJECT_SOURCE_DIR}/src/redis_off.c)
  # The queue's Lua script, embedded as it is (a NUL-terminated byte array).
  set(mp_lua ${PROJECT_SOURCE_DIR}/src/redis_queue.lua)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${mp_lua})
  file(READ ${mp_lua} mp_lua_hex HEX)
  string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," mp_lua_hex "${mp_lua_hex}")
  file(WRITE ${PROJECT_BINARY_DIR}/redis_queue_lua.c.tmp
       "/* Generated from src/redis_queue.lua by cmake/redis.cmake. */\n"
       "extern const char mp__redis_queue_lua[];\n"
       "const char mp__redis_queue_lua[] = {${mp_lua_hex}0};\n")
  configure_file(${PROJECT_BINARY_DIR}/redis_queue_lua.c.tmp
                 ${PROJECT_BINARY_DIR}/redis_queue_lua.c COPYONLY)
  list(APPEND MP_REDIS_SOURCES ${PROJECT_BINARY_DIR}/redis_queue_lua.c)
  if(MP_HAVE_REDIS_TLS)
    list(APPEND MP_PRIVATE_LIBS hiredis::hiredis_ssl hiredis::hiredis OpenSSL::SSL)
    list(APPEND MP_PC_REQUIRES_PRIVATE hiredis_ssl hiredis)
  else()
    list(APPEND MP_PRIVATE_LIBS hiredis::hiredis)
    list(APPEND MP_PC_REQUIRES_PRIVATE hiredis)
  endif()
else()
  set(MP_REDIS_SOURCES ${PROJECT_SOURCE_DIR}/src/redis_off.c)
endif()
