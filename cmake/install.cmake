# Install rules: the library, the public headers, a CMake package and a pkg-config file.
# A static and a shared build may be installed into one prefix (as the Debian -dev package
# does): each installs its own targets file, and multiproc-config.cmake picks one.
include(CMakePackageConfigHelpers)

if(BUILD_SHARED_LIBS)
  set(mp_kind shared)
else()
  set(mp_kind static)
endif()
set(mp_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/multiproc)

install(TARGETS multiproc EXPORT multiproc-targets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES ${PROJECT_SOURCE_DIR}/include/multiproc.h ${PROJECT_BINARY_DIR}/include/multiproc_version.h
  DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT multiproc-targets NAMESPACE multiproc:: FILE multiproc-${mp_kind}-targets.cmake
  DESTINATION ${mp_cmake_dir})

configure_package_config_file(cmake/multiproc-config.cmake.in
  ${PROJECT_BINARY_DIR}/multiproc-config.cmake INSTALL_DESTINATION ${mp_cmake_dir})
# The same compatibility as the ABI policy: 0.x releases are compatible within a minor.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(mp_compat SameMinorVersion)
else()
  set(mp_compat SameMajorVersion)
endif()
write_basic_package_version_file(${PROJECT_BINARY_DIR}/multiproc-config-version.cmake
  COMPATIBILITY ${mp_compat})
install(FILES ${PROJECT_BINARY_DIR}/multiproc-config.cmake
  ${PROJECT_BINARY_DIR}/multiproc-config-version.cmake DESTINATION ${mp_cmake_dir})

# pkg-config: dependencies that ship a .pc file go in Requires.private; the rest (threads,
# libdl, Windows system libraries) in Libs.private. Only the DLL needs a define.
if(WIN32 AND BUILD_SHARED_LIBS)
  set(MP_PC_CFLAGS " -DMP_SHARED")
endif()
# Paths relative to the .pc file's own folder, so that the installed tree can move; libdir
# may be several levels deep (Debian's lib/x86_64-linux-gnu).
file(RELATIVE_PATH MP_PC_PREFIX_FROM_PCDIR ${CMAKE_INSTALL_FULL_LIBDIR}/pkgconfig ${CMAKE_INSTALL_PREFIX})
string(REGEX REPLACE "/$" "" MP_PC_PREFIX_FROM_PCDIR "${MP_PC_PREFIX_FROM_PCDIR}")
file(RELATIVE_PATH MP_PC_LIBDIR_FROM_PREFIX ${CMAKE_INSTALL_PREFIX} ${CMAKE_INSTALL_FULL_LIBDIR})
file(RELATIVE_PATH MP_PC_INCLUDEDIR_FROM_PREFIX ${CMAKE_INSTALL_PREFIX} ${CMAKE_INSTALL_FULL_INCLUDEDIR})
configure_file(cmake/multiproc.pc.in ${PROJECT_BINARY_DIR}/multiproc.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/multiproc.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
