# An overlay port that builds portico from the checkout it lives in:
#   vcpkg install portico --overlay-ports=<checkout>/ports
# A registry port would take the sources from a release archive instead
# (vcpkg_from_github with the release tag and its SHA512); the rest is the same.
set(VCPKG_BUILD_TYPE release) # headers only: nothing differs between debug and release

get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)

vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        -DPORTICO_INSTALL=ON
        -DPORTICO_BUILD_TESTS=OFF
        -DPORTICO_BUILD_EXAMPLES=OFF
        -DPORTICO_BUILD_BENCH=OFF
)
vcpkg_cmake_install()
# portico installs its package to share/cmake/portico; vcpkg wants share/portico.
vcpkg_cmake_config_fixup(PACKAGE_NAME portico CONFIG_PATH share/cmake/portico)

# The license goes where vcpkg puts it, not in share/doc.
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/share/doc")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
