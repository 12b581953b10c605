// The chat room of chat_server: who is in it, and how a line reaches all of
// them. A header of its own so that the tests can run the server's room
// through storms of joins and departures and count what it keeps
// (tests/unit/examples/chat_room.cpp).
#pragma once

#include <portico/coro/task.hpp>
#include <portico/coro/task_group.hpp>
#include <portico/framing/heartbeat_options.hpp>
#include <portico/framing/packet_stream.hpp>
#include <portico/framing/shared_packet.hpp>
#include <portico/net/tcp_socket.hpp>

#include "chat_protocol.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace chat {

// snippet-begin: member
// What every member's stream is held to.
inline portico::packet_stream_options member_options(portico::heartbeat_options heartbeat)
{
    using namespace std::chrono_literals;
    return {
        // A client that stops reading is cut off, not waited for.
        .send = {.high_watermark = 256 * 1024,
                 .low_watermark = 64 * 1024,
                 .policy = portico::overflow_policy::disconnect},
        .packet_timeout = 10s,
        // A client gone without a word is found and dropped.
        .heartbeat = heartbeat,
    };
}
// snippet-end: member

struct member {
    portico::packet_stream<portico::tcp_socket> stream;
    std::string nickname;
};

// snippet-begin: room
class room {
public:
    // Adds a member and announces it to the others. Who is counted in the
    // newcomer's welcome and who is told it joined are read under one lock,
    // so any two members learn of each other exactly once: the earlier from
    // its welcome, the later from a notice. Returns the number of others.
    std::size_t enter(const std::shared_ptr<member>& m)
    {
        std::vector<std::shared_ptr<member>> others;
        {
            std::lock_guard lock(mutex_);
            others = members_;
            members_.push_back(m);
        }
        send(others, joined, m->nickname);
        return others.size();
    }

    // Removes a member and tells those still there, again as one step.
    void leave(const member& m)
    {
        std::vector<std::shared_ptr<member>> others;
        {
            std::lock_guard lock(mutex_);
            std::erase_if(members_, [&m](const auto& other) { return other.get() == &m; });
            others = members_;
        }
        send(others, left, m.nickname);
    }

    // Encodes the packet once and queues the same bytes on every member's
    // stream, waiting for nobody: a slow member's queue fills (and, past its
    // watermark, closes that member) while the others carry on.
    void broadcast(type kind, std::string_view body) { send(everyone(), kind, body); }

    // As broadcast(), but waits until every member's copy was handed to the
    // kernel (for the goodbye at shutdown).
    portico::task<> broadcast_and_wait(type kind, std::string_view body)
    {
        auto [ec, packet] = portico::shared_packet::make(portico::packet_format{}, kind, body);
        if (ec) co_return;
        portico::task_group sent;
        for (const auto& m : everyone()) sent.spawn(deliver(m, packet));
        co_await sent.join();
    }

    // How many are in the room now: a snapshot for logs and tests (a
    // welcome's count comes from enter(), under the same lock as the notices).
    std::size_t member_count()
    {
        std::lock_guard lock(mutex_);
        return members_.size();
    }

private:
    // One packet to each of `to`: encoded once, queued without a copy.
    static void send(const std::vector<std::shared_ptr<member>>& to, type kind, std::string_view body)
    {
        auto [ec, packet] = portico::shared_packet::make(portico::packet_format{}, kind, body);
        if (ec) {
            // The limits on nicknames and lines keep every packet small:
            // this would be a bug, and it is said, not swallowed.
            std::printf("cannot encode a packet of type %d: %s\n", static_cast<int>(kind), ec.message().c_str());
            return;
        }
        // NOTE: outside the room's lock (`to` is a copy of the list): a
        // member over its watermark is closed right here, which resumes
        // that member's session, and it leaves the room (taking the lock).
        for (const auto& m : to) {
            // send_queue_full (a member that stopped reading) closes that
            // stream by its policy; its own session notices and leaves.
            (void)m->stream.queue_packet(packet);
        }
    }

    // The member is kept alive (shared_ptr) until its write is done.
    static portico::task<> deliver(std::shared_ptr<member> m, portico::shared_packet packet)
    {
        auto [ec] = co_await m->stream.write_packet(std::move(packet));
        (void)ec; // a failed member's own session notices and leaves
    }

    std::vector<std::shared_ptr<member>> everyone()
    {
        std::lock_guard lock(mutex_);
        return members_;
    }

    std::mutex mutex_;
    std::vector<std::shared_ptr<member>> members_;
};
// snippet-end: room

} // namespace chat
