#!/usr/bin/env python3
"""Checks what can be checked of the vcpkg port and the Conan recipe without
vcpkg or Conan (neither is installable here): the files parse, name the right
fields, and agree with the one version number (include/portico/config.hpp)
and with the CMake package portico installs. Run by ctest (packaging.metadata).
Standard library only."""

from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
failures: list[str] = []


def check(condition: bool, what: str) -> None:
    if not condition:
        failures.append(what)


def project_version() -> str:
    """The version as CMakeLists.txt reads it from config.hpp."""
    config = (ROOT / "include/portico/config.hpp").read_text()
    parts = [re.search(rf"^#define PORTICO_VERSION_{p} (\d+)$", config, re.M) for p in ("MAJOR", "MINOR", "PATCH")]
    if not all(parts):
        sys.exit("check-packaging: no PORTICO_VERSION_MAJOR/MINOR/PATCH in config.hpp")
    return ".".join(m.group(1) for m in parts)


def check_vcpkg(version: str) -> None:
    port = ROOT / "ports/portico"
    manifest = json.loads((port / "vcpkg.json").read_text())
    check(manifest.get("name") == "portico", "vcpkg.json: name is not 'portico'")
    check(manifest.get("version") == version, f"vcpkg.json: version {manifest.get('version')} is not {version}")
    check(manifest.get("license") == "BSL-1.0", "vcpkg.json: license is not BSL-1.0")
    host_deps = {d["name"] for d in manifest.get("dependencies", []) if isinstance(d, dict) and d.get("host")}
    check({"vcpkg-cmake", "vcpkg-cmake-config"} <= host_deps,
          "vcpkg.json: vcpkg-cmake and vcpkg-cmake-config must be host dependencies")
    portfile = (port / "portfile.cmake").read_text()
    for call in ("vcpkg_cmake_configure", "vcpkg_cmake_install", "vcpkg_install_copyright"):
        check(call + "(" in portfile, f"portfile.cmake: no {call}()")
    check("set(VCPKG_BUILD_TYPE release)" in portfile, "portfile.cmake: a header-only port builds release only")
    # The fix-up must look where portico's CMakeLists.txt installs the package.
    fixup = re.search(r"vcpkg_cmake_config_fixup\(PACKAGE_NAME portico CONFIG_PATH (\S+)\)", portfile)
    cmake = (ROOT / "CMakeLists.txt").read_text()
    check(fixup is not None and fixup.group(1) == "share/cmake/portico"
          and '"${CMAKE_INSTALL_DATADIR}/cmake/portico"' in cmake,
          "portfile.cmake: vcpkg_cmake_config_fixup must use CONFIG_PATH share/cmake/portico, where CMakeLists.txt "
          "installs the package")
    usage = (port / "usage").read_text()
    check("find_package(portico CONFIG REQUIRED)" in usage and "portico::portico" in usage,
          "usage: must show find_package(portico CONFIG REQUIRED) and portico::portico")


def load_conanfile():
    """Imports conanfile.py with just enough of the conan package stubbed out
    to run its own code (set_version, package_id, package_info)."""
    recorded: dict[str, object] = {}

    class ConanFile:  # the recipe's base class
        pass

    def load(_conanfile, path):
        return Path(path).read_text()

    stubs = {
        "conan": types.ModuleType("conan"),
        "conan.tools": types.ModuleType("conan.tools"),
        "conan.tools.build": types.ModuleType("conan.tools.build"),
        "conan.tools.files": types.ModuleType("conan.tools.files"),
        "conan.tools.layout": types.ModuleType("conan.tools.layout"),
    }
    stubs["conan"].ConanFile = ConanFile
    stubs["conan.tools.build"].check_min_cppstd = lambda _self, std: recorded.__setitem__("cppstd", std)
    stubs["conan.tools.files"].copy = lambda *args, **kwargs: None
    stubs["conan.tools.files"].load = load
    stubs["conan.tools.layout"].basic_layout = lambda *args, **kwargs: None
    sys.modules.update(stubs)
    namespace: dict[str, object] = {"__name__": "conanfile"}
    exec(compile((ROOT / "conanfile.py").read_text(), str(ROOT / "conanfile.py"), "exec"), namespace)
    recipes = [v for v in namespace.values() if isinstance(v, type) and issubclass(v, ConanFile) and v is not ConanFile]
    return recipes, recorded


def check_conan(version: str) -> None:
    # Compiled and run by load_conanfile(): a syntax error fails here.
    recipes, recorded = load_conanfile()
    check(len(recipes) == 1, "conanfile.py: expected exactly one recipe class")
    if len(recipes) != 1:
        return
    recipe = recipes[0]()
    recipe.recipe_folder = str(ROOT)
    recipe.set_version()
    check(recipe.version == version, f"conanfile.py: set_version() gives {recipe.version}, not {version}")
    check(recipe.name == "portico", "conanfile.py: name is not 'portico'")
    check(recipe.license == "BSL-1.0", "conanfile.py: license is not BSL-1.0")
    check(recipe.package_type == "header-library", "conanfile.py: package_type is not header-library")
    check({"include/*", "LICENSE"} <= set(recipe.exports_sources), "conanfile.py: exports_sources must list "
          "include/* and LICENSE")

    class Info:
        cleared = False

        def clear(self):
            self.cleared = True

    recipe.info = Info()
    recipe.package_id()
    check(recipe.info.cleared, "conanfile.py: package_id() must clear the info (one package for all settings)")
    recipe.validate()
    check(recorded.get("cppstd") == 20, "conanfile.py: validate() must require C++20")

    class CppInfo:
        def __init__(self):
            self.properties = {}

        def set_property(self, key, value):
            self.properties[key] = value

    for os_name, libs in (("Windows", ["ws2_32", "mswsock"]), ("Linux", None)):
        recipe.cpp_info = CppInfo()
        recipe.settings = types.SimpleNamespace(os=os_name)
        recipe.package_info()
        props = recipe.cpp_info.properties
        check(props.get("cmake_file_name") == "portico" and props.get("cmake_target_name") == "portico::portico",
              "conanfile.py: package_info() must name the CMake package portico and the target portico::portico")
        check(getattr(recipe.cpp_info, "system_libs", None) == libs,
              f"conanfile.py: system libraries on {os_name} should be {libs}")


def main() -> int:
    version = project_version()
    license_text = (ROOT / "LICENSE").read_text()
    check(license_text.startswith("Boost Software License - Version 1.0"), "LICENSE: not the Boost Software License")
    check_vcpkg(version)
    check_conan(version)
    for failure in failures:
        print(f"check-packaging: {failure}")
    print(f"packaging: version {version}; vcpkg port and Conan recipe checked, {len(failures)} problem(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
