// bench_raw: the floor of bench/PROTOCOL.md. The echo, packet, sink, echo-lean and packet-lean
// modes of the portico and Asio servers, written straight on Winsock and one I/O completion port:
// AcceptEx, WSARecv/WSASend, GetQueuedCompletionStatusEx, and skip-completion-port-on-success so
// that an operation that completes at once is handled inline, without a trip through the port.
// The lean modes wait for data with a zero-byte WSARecv and receive into a pooled buffer.
#include "harness.hpp"

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <winsock2.h>
#include <ws2tcpip.h>
#include <mswsock.h>
#include <windows.h>

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

namespace {

// The completion keys this server's port delivers.
enum class completion_key : ULONG_PTR {
    io = 0,   // an overlapped operation of the listener or of a connection: see io_op
    quit = 1, // posted once at shutdown: the worker that dequeues it posts it again and returns
};

// wait: a zero-byte receive (the lean modes), which completes when data (or the end) has arrived.
enum class op_kind { accept, wait, receive, send };

class server;
struct connection;

// The OVERLAPPED of one operation and what the worker needs to route its completion.
// NOTE: `overlapped` is the first member of this standard-layout type, so the OVERLAPPED*
// a completion packet carries converts back to the io_op.
struct io_op {
    OVERLAPPED overlapped{};
    op_kind kind;
    connection* owner = nullptr; // receive and send only
};

// What an attempt to start an operation ended in.
struct issue_result {
    enum { pending, completed, failed } status;
    DWORD bytes = 0; // completed only
};

// One accepted connection: its socket, its buffer and its operations.
//
// NOTE: echo and packet modes receive, then send everything, then receive again, and sink only
// receives; the lean modes wait (a zero-byte receive) before they receive. So a connection has at
// most one operation in flight. Its "owner" is that pending
// operation, or the worker handling the operation's completion; the owner drives it and ends it.
// A second party can hold it for a moment: the worker issuing an operation, which may complete
// and end the connection on another worker before the call returns. Both hold a reference in
// `state`; the last to let go destroys the connection and closes its socket.
struct connection {
    static constexpr unsigned closing = 1;   // stop() has begun: end at the next step
    static constexpr unsigned reference = 2; // the rest of `state` counts references

    explicit connection(SOCKET s) : socket(s) {}

    SOCKET socket;
    io_op wait_op{{}, op_kind::wait, this};
    io_op receive_op{{}, op_kind::receive, this};
    io_op send_op{{}, op_kind::send, this};
    std::atomic<unsigned> state{reference}; // the owner's reference
    // packet: bytes of an incomplete packet kept at the front of `buffer`.
    std::size_t kept = 0;
    // The bytes [send_begin, send_end) of `buffer` still to be sent; after they are, packet mode
    // moves [send_end, received_end) to the front.
    std::size_t send_begin = 0;
    std::size_t send_end = 0;
    std::size_t received_end = 0;
    // packet: a header below the minimum size follows the packets being sent back. The peer still
    // gets every packet before it, as from a server that reads one packet at a time.
    bool end_after_send = false;
    // The server's list of open connections, for stop(); guarded by the server's mutex.
    connection* previous = nullptr;
    connection* next = nullptr;
    // receive_buffer_size bytes: the connection's own (owned_buffer), or one borrowed from the
    // pool while it has data to handle (the lean modes; null while it waits).
    char* buffer = nullptr;
};

// A connection of the modes that are not lean: its buffer comes with it, in one allocation.
struct connection_with_buffer : connection {
    explicit connection_with_buffer(SOCKET s) : connection(s) { buffer = owned_buffer; }

    char owned_buffer[bench::receive_buffer_size];
};

// An AcceptEx in flight: the socket it accepts into and the address space AcceptEx requires.
struct accept_op {
    static constexpr DWORD address_size = sizeof(sockaddr_in) + 16;

    io_op op{{}, op_kind::accept};
    SOCKET socket = INVALID_SOCKET;
    char addresses[2 * address_size];
};

[[nodiscard]] SOCKET open_tcp_socket()
{
    return WSASocketW(AF_INET, SOCK_STREAM, IPPROTO_TCP, nullptr, 0, WSA_FLAG_OVERLAPPED);
}

[[nodiscard]] HANDLE as_handle(SOCKET s) { return reinterpret_cast<HANDLE>(s); }

[[noreturn]] void fail(const char* what)
{
    std::fprintf(stderr, "bench_raw: %s failed (error %d)\n", what, WSAGetLastError());
    std::exit(1);
}

class server {
public:
    static constexpr int accepts_outstanding = 8;
    static constexpr ULONG batch_size = 64;

    explicit server(const bench::options& opts) : options_(opts) {}
    server(const server&) = delete;
    server& operator=(const server&) = delete;

    // Opens the port and the listener and posts the first accepts; returns the port listened on.
    std::uint16_t start();
    void run_workers();
    // Stops accepting, ends every connection, waits for all of them and all accepts to be gone,
    // then stops the workers.
    void stop();

    const bench::counters& counters() const { return counters_; }

private:
    void work();
    void post_quit();
    void complete(io_op& op, bool ok, DWORD bytes);
    void post_accept(accept_op& op);
    void retire_accept(accept_op& op);
    void on_accepted(accept_op& op, bool ok);

    void advance(connection& c, op_kind done, bool ok, DWORD bytes);
    [[nodiscard]] issue_result issue(connection& c, op_kind kind);
    void prepare_send_after_receive(connection& c, DWORD bytes);
    void end(connection& c);
    void release(connection& c);
    void destroy(connection& c);

    bench::options options_;
    bench::counters counters_;
    HANDLE port_ = nullptr;
    LPFN_ACCEPTEX accept_ex_ = nullptr;
    std::vector<std::thread> workers_;

    // Guards everything below: connection set-up and tear-down only, never per message.
    std::mutex mutex_;
    std::condition_variable drained_;
    SOCKET listener_ = INVALID_SOCKET;
    bool stopping_ = false;
    int accepts_pending_ = 0;
    connection* connections_ = nullptr;
};

std::uint16_t server::start()
{
    port_ = CreateIoCompletionPort(INVALID_HANDLE_VALUE, nullptr, 0, options_.threads);
    if (port_ == nullptr) fail("CreateIoCompletionPort");

    listener_ = open_tcp_socket();
    if (listener_ == INVALID_SOCKET) fail("WSASocketW");
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    address.sin_port = htons(options_.port);
    if (bind(listener_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) fail("bind");
    if (listen(listener_, SOMAXCONN) != 0) fail("listen");
    int length = sizeof address;
    if (getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &length) != 0) fail("getsockname");

    GUID accept_ex_id = WSAID_ACCEPTEX;
    DWORD returned = 0;
    if (WSAIoctl(listener_, SIO_GET_EXTENSION_FUNCTION_POINTER, &accept_ex_id, sizeof accept_ex_id, &accept_ex_,
                 sizeof accept_ex_, &returned, nullptr, nullptr) != 0) {
        fail("WSAIoctl(AcceptEx)");
    }
    // NOTE: the listener keeps completions on the port even when AcceptEx succeeds at once:
    // accepts are not what is measured, and a single path for them is simpler.
    if (CreateIoCompletionPort(as_handle(listener_), port_, static_cast<ULONG_PTR>(completion_key::io), 0) == nullptr) {
        fail("CreateIoCompletionPort(listener)");
    }

    const std::lock_guard lock(mutex_);
    for (int i = 0; i != accepts_outstanding; ++i) {
        ++accepts_pending_;
        post_accept(*new accept_op);
    }
    return ntohs(address.sin_port);
}

void server::run_workers()
{
    workers_.reserve(options_.threads);
    for (unsigned i = 0; i != options_.threads; ++i) workers_.emplace_back([this] { work(); });
}

void server::work()
{
    OVERLAPPED_ENTRY entries[batch_size];
    bool quit = false;
    while (!quit) {
        ULONG count = 0;
        if (!GetQueuedCompletionStatusEx(port_, entries, batch_size, &count, INFINITE, FALSE)) fail("dequeue");
        for (ULONG i = 0; i != count; ++i) {
            if (entries[i].lpCompletionKey == static_cast<ULONG_PTR>(completion_key::quit)) {
                // NOTE: one batch may hold several packets, so one quit per worker could all go
                // to one worker. Passing a single quit on reaches every worker, one at a time;
                // the last one left in the port goes with it.
                if (!quit) post_quit();
                quit = true;
                continue;
            }
            auto& op = *reinterpret_cast<io_op*>(entries[i].lpOverlapped);
            // NOTE: the operation's NTSTATUS is in its OVERLAPPED; 0 is STATUS_SUCCESS. Which error
            // it was does not matter here: any failure ends the connection (or that accept).
            complete(op, op.overlapped.Internal == 0, entries[i].dwNumberOfBytesTransferred);
        }
    }
}

void server::post_quit()
{
    if (!PostQueuedCompletionStatus(port_, 0, static_cast<ULONG_PTR>(completion_key::quit), nullptr)) fail("post");
}

void server::complete(io_op& op, bool ok, DWORD bytes)
{
    if (op.kind == op_kind::accept) {
        on_accepted(*reinterpret_cast<accept_op*>(&op), ok);
    } else {
        advance(*op.owner, op.kind, ok, bytes);
    }
}

// Requires mutex_ (the listener may be closed otherwise). Counted in accepts_pending_.
void server::post_accept(accept_op& op)
{
    op.socket = open_tcp_socket();
    if (op.socket == INVALID_SOCKET) {
        retire_accept(op);
        return;
    }
    op.op.overlapped = OVERLAPPED{};
    DWORD received = 0;
    // NOTE: no receive data (0): the accept completes on connect, not on the first bytes.
    if (!accept_ex_(listener_, op.socket, op.addresses, 0, accept_op::address_size, accept_op::address_size, &received,
                    &op.op.overlapped) &&
        WSAGetLastError() != ERROR_IO_PENDING) {
        closesocket(op.socket);
        retire_accept(op);
    }
}

// Requires mutex_.
void server::retire_accept(accept_op& op)
{
    delete &op;
    if (--accepts_pending_ == 0 && connections_ == nullptr) drained_.notify_all();
}

void server::on_accepted(accept_op& op, bool ok)
{
    connection* c = nullptr;
    {
        const std::lock_guard lock(mutex_);
        if (stopping_) {
            // The listener is closed: this accept failed, or succeeded just before; either way
            // the accepted socket is not wanted.
            closesocket(op.socket);
            retire_accept(op);
            return;
        }
        const SOCKET accepted = op.socket;
        post_accept(op);
        const BOOL no_delay = TRUE;
        if (!ok ||
            setsockopt(accepted, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, reinterpret_cast<const char*>(&listener_),
                       sizeof listener_) != 0 ||
            setsockopt(accepted, IPPROTO_TCP, TCP_NODELAY, reinterpret_cast<const char*>(&no_delay), sizeof no_delay) !=
                0 ||
            !SetFileCompletionNotificationModes(as_handle(accepted),
                                                FILE_SKIP_COMPLETION_PORT_ON_SUCCESS | FILE_SKIP_SET_EVENT_ON_HANDLE) ||
            CreateIoCompletionPort(as_handle(accepted), port_, static_cast<ULONG_PTR>(completion_key::io), 0) ==
                nullptr) {
            closesocket(accepted);
            return;
        }
        c = bench::is_lean(options_.mode) ? new connection(accepted) : new connection_with_buffer(accepted);
        c->next = connections_;
        if (connections_ != nullptr) connections_->previous = c;
        connections_ = c;
        counters_.accepted.fetch_add(1, std::memory_order_relaxed);
        counters_.open.fetch_add(1, std::memory_order_relaxed);
    }
    const op_kind kind = bench::is_lean(options_.mode) ? op_kind::wait : op_kind::receive;
    const issue_result first = issue(*c, kind);
    if (first.status != issue_result::pending) advance(*c, kind, first.status == issue_result::completed, first.bytes);
}

// Runs the connection from the completion of its operation `done` until an operation is
// pending on the port or the connection has ended. Operations that complete at once are
// handled here, in this loop, not through the port.
void server::advance(connection& c, op_kind done, bool ok, DWORD bytes)
{
    const bool lean = bench::is_lean(options_.mode);
    const bool framed = options_.mode == bench::mode::packet || options_.mode == bench::mode::packet_lean;
    for (;;) {
        if (!ok) {
            end(c);
            return;
        }
        op_kind next = op_kind::receive;
        if (done == op_kind::wait) {
            // Data (or the end of the stream) has arrived: now the connection needs a buffer.
            if (c.buffer == nullptr) c.buffer = reinterpret_cast<char*>(bench::receive_pool().borrow());
        } else if (done == op_kind::receive) {
            if (bytes == 0) { // the peer closed its side
                end(c);
                return;
            }
            if (options_.mode != bench::mode::sink) {
                prepare_send_after_receive(c, bytes);
                if (c.send_begin != c.send_end) next = op_kind::send;
            }
        } else {
            c.send_begin += bytes;
            if (c.send_begin != c.send_end) next = op_kind::send; // a short send: the rest goes next
        }
        if (next == op_kind::receive && done != op_kind::wait) {
            if (framed) {
                if (c.end_after_send) {
                    end(c);
                    return;
                }
                c.kept = c.received_end - c.send_end;
                if (c.send_end != 0) std::memmove(c.buffer, c.buffer + c.send_end, c.kept);
            }
            // Nothing kept: the buffer goes back and the connection waits without one. (A
            // partial packet keeps it, as a receive is then sure to follow.)
            if (lean && c.kept == 0) {
                bench::receive_pool().give_back(reinterpret_cast<std::byte*>(c.buffer));
                c.buffer = nullptr;
                next = op_kind::wait;
            }
        }
        const issue_result result = issue(c, next);
        if (result.status == issue_result::pending) return;
        done = next;
        ok = result.status == issue_result::completed;
        bytes = result.bytes;
    }
}

// After a receive of `bytes`: sets [send_begin, send_end) to what goes back.
void server::prepare_send_after_receive(connection& c, DWORD bytes)
{
    c.send_begin = 0;
    if (options_.mode == bench::mode::echo || options_.mode == bench::mode::echo_lean) {
        c.send_end = bytes;
        return;
    }
    c.received_end = c.kept + bytes;
    const bench::packet_scan scan =
        bench::scan_packets(reinterpret_cast<const unsigned char*>(c.buffer), c.received_end);
    c.end_after_send = scan.malformed;
    c.send_end = scan.whole;
}

// Starts operation `kind`. Called by the owner; a pending operation becomes the owner.
issue_result server::issue(connection& c, op_kind kind)
{
    // The issuer's own reference (see connection): the owner's may go with the operation.
    if ((c.state.fetch_add(connection::reference, std::memory_order_acq_rel) & connection::closing) != 0) {
        release(c);
        return {issue_result::failed};
    }
    io_op& op = kind == op_kind::wait ? c.wait_op : kind == op_kind::receive ? c.receive_op : c.send_op;
    op.overlapped = OVERLAPPED{};
    WSABUF buffer;
    DWORD bytes = 0;
    int result = 0;
    if (kind == op_kind::wait) {
        // NOTE: a zero-byte receive completes when data or the end of the stream has arrived,
        // and takes nothing from the socket.
        buffer.buf = nullptr;
        buffer.len = 0;
        DWORD flags = 0;
        result = WSARecv(c.socket, &buffer, 1, &bytes, &flags, &op.overlapped, nullptr);
    } else if (kind == op_kind::receive) {
        // packet mode keeps an incomplete packet in front; it is always shorter than the buffer.
        buffer.buf = c.buffer + c.kept;
        buffer.len = static_cast<ULONG>(bench::receive_buffer_size - c.kept);
        DWORD flags = 0;
        result = WSARecv(c.socket, &buffer, 1, &bytes, &flags, &op.overlapped, nullptr);
    } else {
        buffer.buf = c.buffer + c.send_begin;
        buffer.len = static_cast<ULONG>(c.send_end - c.send_begin);
        result = WSASend(c.socket, &buffer, 1, &bytes, 0, &op.overlapped, nullptr);
    }
    // NOTE: with FILE_SKIP_COMPLETION_PORT_ON_SUCCESS, success now means no packet will come.
    if (result == 0) {
        release(c); // never the last: this worker still holds the owner's reference
        return {issue_result::completed, bytes};
    }
    if (WSAGetLastError() != WSA_IO_PENDING) {
        release(c);
        return {issue_result::failed};
    }
    // RACE: stop() sets `closing`, then cancels the connection's I/O. An operation started
    // after that CancelIoEx would wait forever, so the issuer must see `closing` if stop() may
    // have missed its operation. Both sides change `state` with a read-modify-write: if our
    // compare-exchange succeeds before stop()'s fetch_or, the operation was started before stop()
    // cancels; if stop()'s comes first, we see `closing` here and cancel it ourselves, still
    // holding our reference, so the socket is open.
    unsigned s = c.state.load(std::memory_order_relaxed);
    while ((s & connection::closing) == 0) {
        if (c.state.compare_exchange_weak(s, s - connection::reference, std::memory_order_acq_rel,
                                          std::memory_order_relaxed)) {
            // RACE: the operation may have completed, and the connection ended, on another
            // worker since the call returned: then ours was the last reference.
            if (s == connection::reference) destroy(c);
            return {issue_result::pending};
        }
    }
    CancelIoEx(as_handle(c.socket), &op.overlapped);
    release(c);
    return {issue_result::pending};
}

// Called by the owner when the connection is over: takes it off the list, gives up the owner's
// reference.
void server::end(connection& c)
{
    {
        const std::lock_guard lock(mutex_);
        (c.previous != nullptr ? c.previous->next : connections_) = c.next;
        if (c.next != nullptr) c.next->previous = c.previous;
        if (connections_ == nullptr && accepts_pending_ == 0) drained_.notify_all();
    }
    release(c);
}

void server::release(connection& c)
{
    if ((c.state.fetch_sub(connection::reference, std::memory_order_acq_rel) & ~connection::closing) ==
        connection::reference) {
        destroy(c);
    }
}

void server::destroy(connection& c)
{
    closesocket(c.socket);
    bench::connection_closed(counters_);
    if (bench::is_lean(options_.mode)) {
        if (c.buffer != nullptr) bench::receive_pool().give_back(reinterpret_cast<std::byte*>(c.buffer));
        delete &c;
    } else {
        delete static_cast<connection_with_buffer*>(&c);
    }
}

void server::stop()
{
    {
        std::unique_lock lock(mutex_);
        stopping_ = true;
        // Cancels the pending accepts: each completes with an error and is retired.
        closesocket(listener_);
        listener_ = INVALID_SOCKET;
        // NOTE: a listed connection still has its owner's reference (end() unlists it first,
        // under this mutex), so its socket is open while we cancel.
        for (connection* c = connections_; c != nullptr; c = c->next) {
            c->state.fetch_or(connection::closing, std::memory_order_acq_rel);
            CancelIoEx(as_handle(c->socket), nullptr);
        }
        drained_.wait(lock, [this] { return connections_ == nullptr && accepts_pending_ == 0; });
    }
    post_quit();
    for (std::thread& worker : workers_) worker.join();
    CloseHandle(port_);
}

} // namespace

int main(int argc, char** argv)
{
    bench::start_counting();
    const bench::options opts = bench::parse_options(argc, argv);
    bench::refuse_scheduling_knobs(opts, "raw");
    // NOTE: a fan-out needs a receive and sends in flight at once on every connection,
    // a different machine from this server's one operation at a time: the floor
    // covers the modes without shared state.
    if (opts.mode == bench::mode::fanout || opts.mode == bench::mode::download) {
        std::fputs("bench_raw: --mode fanout and --mode download are not implemented\n", stderr);
        return 2;
    }
    WSADATA data;
    if (WSAStartup(MAKEWORD(2, 2), &data) != 0) {
        std::fputs("bench_raw: WSAStartup failed\n", stderr);
        return 1;
    }
    server s(opts);
    const std::uint16_t port = s.start();
    bench::print_listening(port);
    s.run_workers();
    bench::run_control("raw", opts, s.counters());
    s.stop();
    WSACleanup();
    return 0;
}
