// portico: the Winsock extension functions, looked up once per process.
#pragma once

#include <portico/config.hpp>
#include <portico/detail/win/windows.hpp>

#include <system_error>

PORTICO_NAMESPACE_BEGIN

namespace detail::win {

/// AcceptEx, ConnectEx, GetAcceptExSockaddrs, DisconnectEx and
/// TransmitFile, as the socket provider hands them out through
/// WSAIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER), which is how their
/// documentation says to obtain them; asking per call (as some libraries do)
/// costs a system call per operation.
struct extension_functions {
    LPFN_ACCEPTEX accept_ex = nullptr;
    LPFN_CONNECTEX connect_ex = nullptr;
    LPFN_GETACCEPTEXSOCKADDRS get_accept_ex_sockaddrs = nullptr;
    LPFN_DISCONNECTEX disconnect_ex = nullptr;
    LPFN_TRANSMITFILE transmit_file = nullptr;
};

namespace extension_detail {

template <class Fn>
void load(SOCKET s, GUID guid, Fn& out)
{
    DWORD bytes = 0;
    if (::WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof guid, &out, sizeof out, &bytes, nullptr,
                   nullptr) != 0) {
        throw std::system_error(::WSAGetLastError(), std::system_category(),
                                "WSAIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER)");
    }
}

inline extension_functions load_all()
{
    SOCKET s = ::WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, nullptr, 0, WSA_FLAG_OVERLAPPED);
    if (s == INVALID_SOCKET) throw std::system_error(::WSAGetLastError(), std::system_category(), "WSASocketW");
    extension_functions f;
    try {
        load(s, WSAID_ACCEPTEX, f.accept_ex);
        load(s, WSAID_CONNECTEX, f.connect_ex);
        load(s, WSAID_GETACCEPTEXSOCKADDRS, f.get_accept_ex_sockaddrs);
        load(s, WSAID_DISCONNECTEX, f.disconnect_ex);
        load(s, WSAID_TRANSMITFILE, f.transmit_file);
    } catch (...) {
        ::closesocket(s);
        throw;
    }
    ::closesocket(s);
    return f;
}

} // namespace extension_detail

/// The process-wide table, loaded on first use (Winsock must be started:
/// any io_context does that). Throws std::system_error if the provider lacks
/// a function; a later call tries again. Thread safety: any thread.
inline const extension_functions& extensions()
{
    static const extension_functions table = extension_detail::load_all();
    return table;
}

} // namespace detail::win

PORTICO_NAMESPACE_END
