// The load client's command line, parsed (load_client --help describes it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace load {

enum class test_mode { pingpong, pipeline, bulk, churn, burst, idle, fanout, download };

enum class bulk_direction { oneway, both };

struct options {
    std::string host = "127.0.0.1";
    std::string port;
    test_mode mode = test_mode::pingpong;
    std::size_t connections = 1;
    std::size_t idle_connections = 0; // pingpong: silent connections beside the active ones
    std::size_t size = 64;
    std::size_t depth = 16;
    bulk_direction direction = bulk_direction::oneway;
    double duration_s = 3.0;
    double warmup_s = 1.0;
    std::uint64_t seed = 1;
    bool hold_stdin = false;
    bool connect_first = false; // pingpong: connect everything before the warm-up
    bool framed = false;        // pingpong, idle: each message a packet (the servers' packet modes)
    // Not a test: write the file the download mode expects (--size bytes) here, and exit.
    std::string write_file;
};

} // namespace load
