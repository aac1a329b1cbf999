# Install layout and the Debian package. Included last from the top-level CMakeLists.txt; the
# binary (daemon/) and the built-in profiles (connectors/) install themselves.
#
# With --prefix /usr (what the .deb uses):
#   /usr/bin/scimsyncd
#   /usr/lib/systemd/system/scimsync.service     paths inside match the prefix
#   /usr/lib/sysusers.d/scimsync.conf            the scimsync system user
#   /usr/lib/tmpfiles.d/scimsync.conf            /etc/credstore for LoadCredential=
#   /usr/share/scimsync/profiles/*.yaml          built-in connector profiles (for reading)
#   /usr/share/scimsync/prometheus/scimsync-alerts.yml   alert rules (monitoring/)
#   /usr/share/scimsync/grafana/scimsync-dashboard.json  Grafana dashboard (monitoring/)
#   /usr/share/man/man8/scimsyncd.8.gz, man5/scimsync.yaml.5.gz   generated at build time
#   /usr/share/bash-completion/completions/scimsyncd     bash completion
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
install(FILES ${PROJECT_SOURCE_DIR}/monitoring/scimsync-alerts.yml
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/scimsync/prometheus)
install(FILES ${PROJECT_SOURCE_DIR}/monitoring/scimsync-dashboard.json
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/scimsync/grafana)
install(FILES ${PROJECT_SOURCE_DIR}/packaging/bash-completion/scimsyncd
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/bash-completion/completions)

# Man pages, generated from the sources they document so they cannot drift: scimsyncd(8)'s
# synopsis is the built binary's `--help`, scimsync.yaml(5)'s keys are the example config.
# Installed gzipped (-n: no timestamp, so rebuilds are byte-identical), as Debian wants.
set(SCIMSYNC_MAN_DIR ${PROJECT_BINARY_DIR}/man)
set(_gen_man ${PROJECT_SOURCE_DIR}/packaging/man/gen-man.sh)
add_custom_command(
  OUTPUT ${SCIMSYNC_MAN_DIR}/scimsyncd.8 ${SCIMSYNC_MAN_DIR}/scimsyncd.8.gz
  COMMAND ${CMAKE_COMMAND} -E make_directory ${SCIMSYNC_MAN_DIR}
  COMMAND sh ${_gen_man} scimsyncd.8 ${PROJECT_SOURCE_DIR}/packaging/man/scimsyncd.8.in
          ${PROJECT_VERSION} ${SCIMSYNC_MAN_DIR}/scimsyncd.8 $<TARGET_FILE:scimsyncd>
  COMMAND gzip -9nf -k ${SCIMSYNC_MAN_DIR}/scimsyncd.8
  DEPENDS scimsyncd ${_gen_man} ${PROJECT_SOURCE_DIR}/packaging/man/scimsyncd.8.in
  COMMENT "Generating scimsyncd.8 from scimsyncd --help")
add_custom_command(
  OUTPUT ${SCIMSYNC_MAN_DIR}/scimsync.yaml.5 ${SCIMSYNC_MAN_DIR}/scimsync.yaml.5.gz
  COMMAND ${CMAKE_COMMAND} -E make_directory ${SCIMSYNC_MAN_DIR}
  COMMAND sh ${_gen_man} scimsync.yaml.5 ${PROJECT_SOURCE_DIR}/packaging/man/scimsync.yaml.5.in
          ${PROJECT_VERSION} ${SCIMSYNC_MAN_DIR}/scimsync.yaml.5
          ${PROJECT_SOURCE_DIR}/config/examples/scimsync.yaml
  COMMAND gzip -9nf -k ${SCIMSYNC_MAN_DIR}/scimsync.yaml.5
  DEPENDS ${_gen_man} ${PROJECT_SOURCE_DIR}/packaging/man/scimsync.yaml.5.in
          ${PROJECT_SOURCE_DIR}/config/examples/scimsync.yaml
  COMMENT "Generating scimsync.yaml.5 from config/examples/scimsync.yaml")
# The package's Debian changelog: one entry for the version being packaged. A native version
# (no revision) has changelog.gz, one with a revision (-DSCIMSYNC_DEB_RELEASE=2, how the
# package test builds its upgrade) changelog.Debian.gz.
set(SCIMSYNC_DEB_RELEASE "" CACHE STRING "Debian revision of the package (empty: native 0.1.0)")
set(SCIMSYNC_DEB_MAINTAINER "scimsync maintainers <scimsync@localhost>"
    CACHE STRING "Maintainer field of the .deb")
set(_deb_version "${PROJECT_VERSION}")
set(_changelog_name changelog)
if(SCIMSYNC_DEB_RELEASE)
  set(_deb_version "${PROJECT_VERSION}-${SCIMSYNC_DEB_RELEASE}")
  set(_changelog_name changelog.Debian)
endif()
file(WRITE ${SCIMSYNC_MAN_DIR}/${_changelog_name}
"scimsync (${_deb_version}) unstable; urgency=medium

  * Built by CPack from the scimsync source tree; its history is the git log.

 -- ${SCIMSYNC_DEB_MAINTAINER}  Thu, 01 Jan 2026 00:00:00 +0000
")
set(SCIMSYNC_CHANGELOG_GZ ${SCIMSYNC_MAN_DIR}/${_changelog_name}.gz)
add_custom_command(
  OUTPUT ${SCIMSYNC_CHANGELOG_GZ}
  COMMAND gzip -9nf -k ${SCIMSYNC_MAN_DIR}/${_changelog_name}
  DEPENDS ${SCIMSYNC_MAN_DIR}/${_changelog_name})
add_custom_target(scimsync_man ALL
  DEPENDS ${SCIMSYNC_MAN_DIR}/scimsyncd.8.gz ${SCIMSYNC_MAN_DIR}/scimsync.yaml.5.gz
          ${SCIMSYNC_CHANGELOG_GZ})
install(FILES ${SCIMSYNC_MAN_DIR}/scimsyncd.8.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man8)
install(FILES ${SCIMSYNC_MAN_DIR}/scimsync.yaml.5.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man5)

install(FILES ${PROJECT_SOURCE_DIR}/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
# Debian wants a copyright file and a changelog in every package's doc directory (lintian).
install(FILES ${PROJECT_SOURCE_DIR}/packaging/debian/copyright DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${SCIMSYNC_CHANGELOG_GZ} DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${PROJECT_SOURCE_DIR}/packaging/debian/lintian-overrides
        DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/lintian/overrides RENAME scimsync)
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
set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "scimsync")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "HR-system webhooks to JumpCloud users over SCIM 2.0")
# Lines under 80 columns: dpkg shows them as written (lintian: extended-description-line-too-long).
set(CPACK_PACKAGE_DESCRIPTION
    "scimsyncd receives HR-system webhooks (BambooHR, HiBob, Personio, Rippling,
Gusto, Deel, Merge, Finch, Factorial or any JSON sender), stores each event
durably in Redis Streams and converges the employee's JumpCloud user through
JumpCloud's SCIM 2.0 API.")
set(CPACK_PACKAGE_CONTACT "${SCIMSYNC_DEB_MAINTAINER}")
# Install with DESTDIR and prefix /usr, so the absolute /etc destination lands in the package.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX "/usr")
set(CPACK_PACKAGING_INSTALL_PREFIX "/usr")
set(CPACK_STRIP_FILES ON)

set(CPACK_DEBIAN_PACKAGE_NAME "scimsync")
if(SCIMSYNC_DEB_RELEASE)
  set(CPACK_DEBIAN_PACKAGE_RELEASE "${SCIMSYNC_DEB_RELEASE}")
endif()
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
