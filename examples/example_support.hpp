// What every example's main needs and none of the examples is about: reading
// "--name value" options. (Stopping on Ctrl+C is portico::signal_set's job.)
#pragma once

#include <string_view>

namespace example {

/// The word after `name` on the command line, or `fallback` if `name` is not
/// there (or is the last word).
inline const char* option(int argc, char** argv, std::string_view name, const char* fallback)
{
    for (int i = 1; i + 1 < argc; ++i) {
        if (argv[i] == name) return argv[i + 1];
    }
    return fallback;
}

} // namespace example
