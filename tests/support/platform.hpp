// What the tests run on, for the few behaviours that differ under Wine.
#pragma once

#include <portico/detail/win/windows.hpp>

namespace portico::test {

/// True when the program runs under Wine (ntdll exports wine_get_version).
inline bool running_under_wine() noexcept
{
    const HMODULE ntdll = ::GetModuleHandleW(L"ntdll.dll");
    return ntdll != nullptr && ::GetProcAddress(ntdll, "wine_get_version") != nullptr;
}

} // namespace portico::test
