# Install layout and the Debian package. Included last from the top-level CMakeLists.txt; the
# binary (daemon/) and the built-in profiles (connectors/) install themselves.
#
# With --prefix /usr (what the .deb uses):
#   /usr/bin/scimsyncd
#   /usr/lib/systemd/system/scimsync.service     paths inside match the prefix
#   /usr/lib/sysusers.d/scimsync.conf            the scimsync system user
#   /usr/lib/tmpfiles.d/scimsync.conf            /etc/credstore for LoadCredential=
#   /usr/share/scimsync/profiles/*.yaml          built-in connector profiles (for reading)
#   /usr/share/doc/scimsync/                     README.md, operations.md, examples/
#   /etc/scimsync/scimsync.yaml                  the example config (a conffile in the .deb)
# Another prefix moves all of these under it, the config to <prefix>/etc/scimsync/.
#
# Paths depending on the prefix are computed when installing, not when configuring, so
# `cmake --install build --prefix /usr` and CPack (which installs with prefix /usr) agree.
#
# Package: cmake -S . -B build/deb -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_TESTING=OFF
#          cmake --build build/deb && (cd build/deb && cpack -G DEB)

include(GNUInstallDirs)

set(SCIMSYNC_SYSTEMD_DIR ${PROJECT_SOURCE_DIR}/systemd)

install(FILES ${SCIMSYNC_SYSTEMD_DIR}/scimsync.sysusers
        DESTINATION lib/sysusers.d RENAME scimsync.conf)
install(FILES ${SCIMSYNC_SYSTEMD_DIR}/scimsync.tmpfiles
        DESTINATION lib/tmpfiles.d RENAME scimsync.conf)
install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${PROJECT_SOURCE_DIR}/docs/operations.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${PROJECT_SOURCE_DIR}/config/examples/scimsync.yaml
              ${SCIMSYNC_SYSTEMD_DIR}/scimsync.env.example
        DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)

# The unit names the binary and the config by absolute path; the source file says /usr/bin and
# /etc (so it can be checked as it is), and this rewrites both for the prefix being installed to.
# The config goes to /etc for prefix /usr, as GNUInstallDirs does; an existing config is kept
# (dpkg handles it as a conffile; a plain `cmake --install` must not overwrite an admin's edits).
install(CODE "
  set(_prefix \"\${CMAKE_INSTALL_PREFIX}\")
  if(_prefix STREQUAL \"/usr\")
    set(_etc \"/etc\")
  else()
    set(_etc \"\${_prefix}/etc\")
  endif()
  file(READ \"${SCIMSYNC_SYSTEMD_DIR}/scimsync.service\" _unit)
  string(REPLACE \"/usr/bin/scimsyncd\" \"\${_prefix}/${CMAKE_INSTALL_BINDIR}/scimsyncd\" _unit \"\${_unit}\")
  string(REPLACE \"/etc/scimsync/scimsync.yaml\" \"\${_etc}/scimsync/scimsync.yaml\" _unit \"\${_unit}\")
  string(REPLACE \"/usr/share/doc/scimsync/\" \"\${_prefix}/${CMAKE_INSTALL_DATAROOTDIR}/doc/scimsync/\" _unit \"\${_unit}\")
  # One staging file per destination: parallel installs (tests) must not share it.
  string(MD5 _key \"\$ENV{DESTDIR}\${_prefix}\")
  set(_staged \"${PROJECT_BINARY_DIR}/install-staging/\${_key}/scimsync.service\")
  file(WRITE \"\${_staged}\" \"\${_unit}\")
  file(INSTALL DESTINATION \"\${_prefix}/lib/systemd/system\" TYPE FILE
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ FILES \"\${_staged}\")

  if(EXISTS \"\$ENV{DESTDIR}\${_etc}/scimsync/scimsync.yaml\")
    message(STATUS \"Keeping: \$ENV{DESTDIR}\${_etc}/scimsync/scimsync.yaml\")
  else()
    file(INSTALL DESTINATION \"\${_etc}/scimsync\" TYPE FILE
         PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
         FILES \"${PROJECT_SOURCE_DIR}/config/examples/scimsync.yaml\")
  endif()
")

# --- Debian package (cpack -G DEB). ---
set(SCIMSYNC_DEB_MAINTAINER "scimsync maintainers <scimsync@localhost>"
    CACHE STRING "Maintainer field of the .deb")

set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "scimsync")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "HR-system webhooks to JumpCloud users over SCIM 2.0")
set(CPACK_PACKAGE_DESCRIPTION
    "scimsyncd receives HR-system webhooks (BambooHR, HiBob, Personio, Rippling, Gusto, Deel, \
Merge, Finch, Factorial or any JSON sender), stores each event durably in Redis Streams and \
converges the employee's JumpCloud user through JumpCloud's SCIM 2.0 API.")
set(CPACK_PACKAGE_CONTACT "${SCIMSYNC_DEB_MAINTAINER}")
# Install with DESTDIR and prefix /usr, so the absolute /etc destination lands in the package.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX "/usr")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)

set(CPACK_DEBIAN_PACKAGE_NAME "scimsync")
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${SCIMSYNC_DEB_MAINTAINER}")
set(CPACK_DEBIAN_PACKAGE_SECTION "admin")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
# Library dependencies come from dpkg-shlibdeps on the installed binary; adduser is the
# user-creation fallback of postinst on hosts without systemd, procps has the unit's /bin/kill.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "adduser, procps")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "redis-server (>= 5:7.0), systemd")

set(SCIMSYNC_DEB_CONTROL_DIR ${PROJECT_BINARY_DIR}/debian-control)
file(MAKE_DIRECTORY ${SCIMSYNC_DEB_CONTROL_DIR})
# dpkg keeps an admin's edits of a conffile across upgrades and asks before replacing them.
file(WRITE ${SCIMSYNC_DEB_CONTROL_DIR}/conffiles "/etc/scimsync/scimsync.yaml\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${SCIMSYNC_DEB_CONTROL_DIR}/conffiles
    ${PROJECT_SOURCE_DIR}/cmake/debian/postinst
    ${PROJECT_SOURCE_DIR}/cmake/debian/prerm
    ${PROJECT_SOURCE_DIR}/cmake/debian/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)

include(CPack)
