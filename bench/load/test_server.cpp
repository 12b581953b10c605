// A native stand-in for the benchmark servers, so that the load client can be
// tested on Linux: the echo, packet, sink, fanout and download modes and the
// stdin control of bench/PROTOCOL.md, on one level-triggered epoll loop.
//   test_server --mode echo|packet|sink|fanout|download [--port N] [--file PATH] [--corrupt] [--straggler]
//               [--slow-first] [--drop-quiet]
// --corrupt flips a byte in every 100th reply (fanout: delivery; download: file
// sent), which the client must notice. download sends the --file, read into
// memory at the start, for each "GET ". --straggler (fanout) holds back the deliveries to the
// first peer that gets one until 40 are waiting, then sends them one packet
// per turn of its loop: a receiver whose first packet arrives far behind the
// others, which the client must wait for. --slow-first (echo and packet)
// holds every reply to the first connection accepted for 5 ms, and serves
// the others at once: one slow connection among fast ones, which the
// client's worst connection median must show. --drop-quiet closes a
// connection that has sent nothing for 200 ms (an idle timeout), which the
// client must report for its idle connections.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace {

enum class server_mode { echo, packet, sink, fanout, download };

// One receive call reads at most this much, like the real servers' 64 KiB buffer.
constexpr std::size_t receive_size = 64 * 1024;
// packet and fanout keep a partial packet (< 64 KiB) in front of the next receive.
constexpr std::size_t packet_buffer_size = 2 * receive_size;
constexpr std::size_t header_size = 4;
constexpr std::uint64_t corrupt_every = 100;
constexpr std::uint64_t straggler_backlog = 40;
constexpr auto slow_delay = std::chrono::milliseconds(5);
constexpr auto quiet_limit = std::chrono::milliseconds(200);

using clock_type = std::chrono::steady_clock;

[[noreturn]] void throw_errno(const char* what) { throw std::system_error(errno, std::generic_category(), what); }

struct peer {
    int fd = -1;
    std::uint32_t interest = EPOLLIN;
    std::vector<std::uint8_t> buffer;
    std::size_t filled = 0;    // bytes received into buffer
    std::size_t reply_end = 0; // buffer[0, reply_end) goes back; 0: nothing to send
    std::size_t replied = 0;   // of which this much is sent
    // fanout: packets delivered to this peer, of which outbox_sent bytes are sent.
    std::vector<std::uint8_t> outbox;
    std::size_t outbox_sent = 0;
    std::chrono::steady_clock::time_point last_received{}; // --drop-quiet
};

class server {
public:
    server(server_mode mode, std::uint16_t port, bool corrupt, bool straggler, bool slow_first, bool drop_quiet,
           std::vector<std::uint8_t> file)
        : mode_(mode), corrupt_(corrupt), straggler_(straggler), file_(std::move(file)), slow_first_(slow_first),
          drop_quiet_(drop_quiet)
    {
        epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
        if (epoll_fd_ < 0) throw_errno("epoll_create1");
        listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (listener_ < 0) throw_errno("socket");
        const int on = 1;
        ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address.sin_port = htons(port);
        if (::bind(listener_, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) throw_errno("bind");
        if (::listen(listener_, SOMAXCONN) != 0) throw_errno("listen");
        socklen_t size = sizeof address;
        if (::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &size) != 0) throw_errno("getsockname");
        port_ = ntohs(address.sin_port);
        add(listener_, EPOLLIN);
    }

    ~server()
    {
        for (auto& p : peers_) {
            if (p) ::close(p->fd);
        }
        ::close(listener_);
        ::close(epoll_fd_);
    }

    server(const server&) = delete;
    server& operator=(const server&) = delete;

    // Serves until `quit` or the end of stdin.
    void run()
    {
        std::printf("listening on 127.0.0.1:%u\n", static_cast<unsigned>(port_));
        std::fflush(stdout);
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.fd = STDIN_FILENO;
        if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, STDIN_FILENO, &event) != 0) {
            // A regular file or /dev/null: its commands are all there already.
            while (read_commands()) {
            }
            return;
        }
        epoll_event events[256];
        for (;;) {
            const int n = ::epoll_wait(epoll_fd_, events, 256, drop_quiet_ ? 50 : held_reply_timeout());
            if (n < 0 && errno != EINTR) throw_errno("epoll_wait");
            release_held_reply();
            if (drop_quiet_) drop_quiet_peers();
            for (int i = 0; i < n; ++i) {
                const int fd = events[i].data.fd;
                if (fd == STDIN_FILENO) {
                    if (!read_commands()) return;
                } else if (fd == listener_) {
                    accept_all();
                } else if (static_cast<std::size_t>(fd) < peers_.size() && peers_[fd]) {
                    serve(*peers_[fd]);
                }
            }
        }
    }

private:
    void add(int fd, std::uint32_t events)
    {
        epoll_event event{};
        event.events = events;
        event.data.fd = fd;
        if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) throw_errno("epoll_ctl");
    }

    void accept_all()
    {
        for (;;) {
            const int fd = ::accept4(listener_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == ECONNABORTED) continue;
                if (errno != EAGAIN && errno != EWOULDBLOCK) std::perror("test_server: accept");
                return;
            }
            const int on = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
            if (peers_.size() <= static_cast<std::size_t>(fd)) peers_.resize(fd + 1);
            peers_[fd] = std::make_unique<peer>();
            peers_[fd]->fd = fd;
            peers_[fd]->last_received = clock_type::now();
            if (slow_first_ && accepted_ == 0) slow_fd_ = fd;
            peers_[fd]->buffer.resize(mode_ == server_mode::packet || mode_ == server_mode::fanout ? packet_buffer_size
                                                                                                   : receive_size);
            add(fd, EPOLLIN);
            ++accepted_;
            ++open_;
        }
    }

    void serve(peer& p)
    {
        if (mode_ == server_mode::download) {
            // Sends the files asked for, and reads the next requests.
            if (!flush(p)) return;
            if (p.outbox.empty()) take_requests(p);
            return;
        }
        if (mode_ == server_mode::fanout) {
            // Sends what is delivered to it, and receives at any time.
            if (!flush(p)) return;
            fan_out(p);
            return;
        }
        if (p.fd == slow_fd_ && held_until_ != clock_type::time_point{}) return; // its reply is held
        if (p.reply_end > 0)
            reply(p);
        else
            receive(p);
    }

    // Receives after what the peer's buffer holds: the byte count, 0 if
    // nothing is waiting, or -1 if the peer closed or failed (it is dropped).
    std::ptrdiff_t receive_into(peer& p)
    {
        const std::size_t room = std::min(receive_size, p.buffer.size() - p.filled);
        const auto n = ::recv(p.fd, p.buffer.data() + p.filled, room, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        if (n <= 0) {
            drop(p);
            return -1;
        }
        p.last_received = clock_type::now();
        return n;
    }

    void receive(peer& p)
    {
        const auto n = receive_into(p);
        if (n <= 0) return;
        if (mode_ == server_mode::sink) return;
        p.filled += static_cast<std::size_t>(n);
        std::size_t end = p.filled;
        if (mode_ == server_mode::packet) {
            // Every whole packet goes back; a partial one waits for its rest.
            end = 0;
            while (p.filled - end >= header_size) {
                const std::size_t size = p.buffer[end] | (p.buffer[end + 1] << 8);
                if (size < header_size) {
                    drop(p);
                    return;
                }
                if (p.filled - end < size) break;
                end += size;
            }
        }
        if (end == 0) return;
        p.reply_end = end;
        p.replied = 0;
        if (corrupt_ && ++replies_ % corrupt_every == 0) p.buffer[end - 1] ^= 0x01;
        if (p.fd == slow_fd_) {
            held_until_ = clock_type::now() + slow_delay;
            watch(p, 0);
            return;
        }
        reply(p);
    }

    // --slow-first: the wait, in milliseconds, until the held reply is due (-1: none).
    int held_reply_timeout() const
    {
        if (held_until_ == clock_type::time_point{}) return -1;
        const auto wait = std::chrono::ceil<std::chrono::milliseconds>(held_until_ - clock_type::now());
        return static_cast<int>(std::max<std::int64_t>(0, wait.count()));
    }

    // --drop-quiet: closes the connections that sent nothing for quiet_limit.
    void drop_quiet_peers()
    {
        const auto now = clock_type::now();
        for (auto& p : peers_) {
            if (p && now - p->last_received >= quiet_limit) drop(*p);
        }
    }

    // --slow-first: sends the held reply once it is due.
    void release_held_reply()
    {
        if (held_until_ == clock_type::time_point{} || clock_type::now() < held_until_) return;
        held_until_ = {};
        if (slow_fd_ >= 0 && static_cast<std::size_t>(slow_fd_) < peers_.size() && peers_[slow_fd_])
            reply(*peers_[slow_fd_]);
    }

    // Sends the rest of the reply; receives again once it is all out.
    void reply(peer& p)
    {
        while (p.replied < p.reply_end) {
            const auto n = ::send(p.fd, p.buffer.data() + p.replied, p.reply_end - p.replied, MSG_NOSIGNAL);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                watch(p, EPOLLOUT);
                return;
            }
            if (n < 0) {
                drop(p);
                return;
            }
            p.replied += static_cast<std::size_t>(n);
        }
        std::memmove(p.buffer.data(), p.buffer.data() + p.reply_end, p.filled - p.reply_end);
        p.filled -= p.reply_end;
        p.reply_end = 0;
        watch(p, EPOLLIN);
    }

    // download: every whole "GET " received queues the file on the peer's outbox.
    void take_requests(peer& p)
    {
        const auto n = receive_into(p);
        if (n <= 0) return;
        p.filled += static_cast<std::size_t>(n);
        std::size_t end = 0;
        for (; p.filled - end >= 4; end += 4) {
            if (std::memcmp(p.buffer.data() + end, "GET ", 4) != 0) {
                drop(p);
                return;
            }
            p.outbox.insert(p.outbox.end(), file_.begin(), file_.end());
            if (corrupt_ && ++replies_ % corrupt_every == 0 && !file_.empty()) p.outbox.back() ^= 0x01;
        }
        std::memmove(p.buffer.data(), p.buffer.data() + end, p.filled - end);
        p.filled -= end;
        flush(p);
    }

    // fanout: receives, and delivers every whole packet to every other peer.
    void fan_out(peer& p)
    {
        const auto n = receive_into(p);
        if (n <= 0) return;
        p.filled += static_cast<std::size_t>(n);
        std::size_t end = 0;
        while (p.filled - end >= header_size) {
            const std::size_t size = p.buffer[end] | (p.buffer[end + 1] << 8);
            if (size < header_size) {
                drop(p);
                return;
            }
            if (p.filled - end < size) break;
            for (auto& other : peers_) {
                if (!other || other.get() == &p) continue;
                other->outbox.insert(other->outbox.end(), p.buffer.begin() + end, p.buffer.begin() + end + size);
                if (corrupt_ && ++replies_ % corrupt_every == 0) other->outbox.back() ^= 0x01;
                if (straggler_ && straggler_fd_ == -1) straggler_fd_ = other->fd;
                if (other->fd == straggler_fd_) ++held_;
            }
            end += size;
        }
        std::memmove(p.buffer.data(), p.buffer.data() + end, p.filled - end);
        p.filled -= end;
        // NOTE: flushing may drop a peer, which resets its slot: by index, not by reference.
        for (std::size_t fd = 0; fd < peers_.size(); ++fd) {
            if (peers_[fd] && peers_[fd].get() != &p) flush(*peers_[fd]);
        }
    }

    // fanout: sends what the peer's outbox holds; false if the peer was dropped.
    bool flush(peer& p)
    {
        const bool straggling = p.fd == straggler_fd_;
        if (straggling && held_ < straggler_backlog) return true;
        while (p.outbox_sent < p.outbox.size()) {
            std::size_t end = p.outbox.size();
            if (straggling) {
                // One packet per turn of the loop: its first packets arrive
                // well before the last of its backlog.
                if (p.outbox_sent >= straggler_packet_end_)
                    straggler_packet_end_ =
                        p.outbox_sent + (p.outbox[p.outbox_sent] | (p.outbox[p.outbox_sent + 1] << 8));
                end = straggler_packet_end_;
            }
            const auto n = ::send(p.fd, p.outbox.data() + p.outbox_sent, end - p.outbox_sent, MSG_NOSIGNAL);
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
                watch(p, EPOLLIN | EPOLLOUT);
                return true;
            }
            if (n < 0) {
                drop(p);
                return false;
            }
            p.outbox_sent += static_cast<std::size_t>(n);
            if (straggling && p.outbox_sent < p.outbox.size()) {
                watch(p, EPOLLIN | EPOLLOUT); // level-triggered: the next turn sends more
                return true;
            }
        }
        p.outbox.clear();
        p.outbox_sent = 0;
        straggler_packet_end_ = 0;
        // Once its backlog is out, it is served like the others.
        if (straggling) straggler_fd_ = -2;
        watch(p, EPOLLIN);
        return true;
    }

    void watch(peer& p, std::uint32_t events)
    {
        if (p.interest == events) return;
        p.interest = events;
        epoll_event event{};
        event.events = events;
        event.data.fd = p.fd;
        if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, p.fd, &event) != 0) throw_errno("epoll_ctl");
    }

    void drop(peer& p)
    {
        const int fd = p.fd;
        if (fd == slow_fd_) {
            slow_fd_ = -1;
            held_until_ = {};
        }
        ::close(fd);
        peers_[fd].reset();
        --open_;
    }

    // Handles the complete lines on stdin; false at `quit` or its end.
    bool read_commands()
    {
        char chunk[4096];
        const auto n = ::read(STDIN_FILENO, chunk, sizeof chunk);
        if (n < 0 && errno == EINTR) return true;
        if (n <= 0) return false;
        commands_.append(chunk, static_cast<std::size_t>(n));
        for (auto newline = commands_.find('\n'); newline != std::string::npos; newline = commands_.find('\n')) {
            const std::string line = commands_.substr(0, newline);
            commands_.erase(0, newline + 1);
            if (line == "quit") return false;
            if (line == "stats") print_stats();
        }
        return true;
    }

    void print_stats() const
    {
        constexpr const char* names[] = {"echo", "packet", "sink", "fanout", "download"};
        std::printf("{\"impl\":\"test\",\"mode\":\"%s\",\"accepted\":%llu,\"open\":%llu}\n",
                    names[static_cast<int>(mode_)], static_cast<unsigned long long>(accepted_),
                    static_cast<unsigned long long>(open_));
        std::fflush(stdout);
    }

    server_mode mode_;
    bool corrupt_;
    bool straggler_;
    std::vector<std::uint8_t> file_; // download: what each request gets
    int straggler_fd_ = -1;
    std::uint64_t held_ = 0; // deliveries to the straggler
    std::size_t straggler_packet_end_ = 0;
    bool slow_first_;
    bool drop_quiet_;
    int slow_fd_ = -1;                  // --slow-first: the connection whose replies are held
    clock_type::time_point held_until_; // when its held reply is due; the epoch: none held
    int epoll_fd_ = -1;
    int listener_ = -1;
    std::uint16_t port_ = 0;
    std::vector<std::unique_ptr<peer>> peers_; // by descriptor
    std::string commands_;                     // stdin not yet handled
    std::uint64_t accepted_ = 0;
    std::uint64_t open_ = 0;
    std::uint64_t replies_ = 0;
};

[[noreturn]] void usage(const char* problem)
{
    std::fprintf(stderr,
                 "test_server: %s\nusage: test_server --mode echo|packet|sink|fanout|download [--port N] [--file PATH] "
                 "[--corrupt] [--straggler] [--slow-first] [--drop-quiet]\n",
                 problem);
    std::exit(2);
}

} // namespace

int main(int argc, char** argv)
{
    server_mode mode = server_mode::echo;
    bool have_mode = false;
    std::uint16_t port = 0;
    bool corrupt = false;
    bool straggler = false;
    bool slow_first = false;
    bool drop_quiet = false;
    std::string file;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        if (arg == "--corrupt") {
            corrupt = true;
            continue;
        }
        if (arg == "--straggler") {
            straggler = true;
            continue;
        }
        if (arg == "--slow-first") {
            slow_first = true;
            continue;
        }
        if (arg == "--drop-quiet") {
            drop_quiet = true;
            continue;
        }
        if (i + 1 == argc) usage("a value is missing");
        const std::string_view value = argv[++i];
        if (arg == "--mode") {
            have_mode = true;
            if (value == "echo")
                mode = server_mode::echo;
            else if (value == "packet")
                mode = server_mode::packet;
            else if (value == "sink")
                mode = server_mode::sink;
            else if (value == "fanout")
                mode = server_mode::fanout;
            else if (value == "download")
                mode = server_mode::download;
            else
                usage("unknown mode");
        } else if (arg == "--file") {
            file = value;
        } else if (arg == "--port") {
            const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), port);
            if (error != std::errc{} || end != value.data() + value.size()) usage("bad port");
        } else {
            usage("unknown option");
        }
    }
    if (!have_mode) usage("--mode is required");
    if (mode == server_mode::download && file.empty()) usage("--mode download needs --file");
    try {
        std::vector<std::uint8_t> content;
        if (!file.empty()) {
            std::ifstream in(file, std::ios::binary);
            if (!in) usage("cannot read --file");
            content.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        }
        server(mode, port, corrupt, straggler, slow_first, drop_quiet, std::move(content)).run();
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "test_server: %s\n", e.what());
        return 1;
    }
}
