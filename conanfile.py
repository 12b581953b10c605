"""Conan 2 recipe for portico, a header-only library.

    conan create . --build=missing          # package this checkout
    # in a consumer's conanfile.txt: [requires] portico/0.1.0, [generators] CMakeDeps CMakeToolchain
    # then in CMake: find_package(portico CONFIG REQUIRED) and link portico::portico

The version is read from include/portico/config.hpp, the one place it lives.
"""

import os
import re

from conan import ConanFile
from conan.tools.build import check_min_cppstd
from conan.tools.files import copy, load
from conan.tools.layout import basic_layout


class PorticoConan(ConanFile):
    name = "portico"
    description = "Header-only C++20 coroutine networking for Windows I/O completion ports"
    license = "BSL-1.0"
    topics = ("networking", "iocp", "coroutines", "game-server", "header-only")
    package_type = "header-library"
    settings = "os", "arch", "compiler", "build_type"
    exports_sources = "include/*", "LICENSE"
    no_copy_source = True

    def set_version(self):
        config = load(self, os.path.join(self.recipe_folder, "include", "portico", "config.hpp"))
        parts = [re.search(rf"#define PORTICO_VERSION_{part} (\d+)", config).group(1)
                 for part in ("MAJOR", "MINOR", "PATCH")]
        self.version = ".".join(parts)

    def layout(self):
        basic_layout(self, src_folder=".")

    def package_id(self):
        # Headers only: one package for every setting.
        self.info.clear()

    def validate(self):
        check_min_cppstd(self, 20)

    def package(self):
        copy(self, "LICENSE", self.source_folder, os.path.join(self.package_folder, "licenses"))
        copy(self, "*.hpp", os.path.join(self.source_folder, "include"), os.path.join(self.package_folder, "include"))

    def package_info(self):
        # The same names as portico's own CMake package.
        self.cpp_info.set_property("cmake_file_name", "portico")
        self.cpp_info.set_property("cmake_target_name", "portico::portico")
        self.cpp_info.bindirs = []
        self.cpp_info.libdirs = []
        if self.settings.os == "Windows":
            self.cpp_info.system_libs = ["ws2_32", "mswsock"]
