// detail::make_strand_executor: the concrete strand for an io_context's or a thread pool's
// executor (no allocation per handler), the type-erased one for anything else; either way
// handlers run one at a time, in order.
#include "catch.hpp"

#include "core/strand_executor.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <vector>

namespace asio = boost::asio;
using outbox::detail::make_strand_executor;

TEST_CASE("make_strand_executor: the concrete strand where the executor's type is known") {
    asio::io_context io;
    const auto on_io = make_strand_executor(io.get_executor());
    CHECK(on_io.target<asio::strand<asio::io_context::executor_type>>() != nullptr);

    asio::thread_pool pool(2);
    const auto on_pool = make_strand_executor(pool.get_executor());
    CHECK(on_pool.target<asio::strand<asio::thread_pool::executor_type>>() != nullptr);

    // A strand given as the executor: a strand of it, type-erased.
    const auto nested = make_strand_executor(on_io);
    CHECK(nested.target<asio::strand<asio::any_io_executor>>() != nullptr);
    pool.join();
}

TEST_CASE("make_strand_executor: handlers on a thread pool run one at a time, in order") {
    asio::thread_pool pool(2);
    const auto strand = make_strand_executor(pool.get_executor());
    std::vector<int> order;  // written by the handlers alone: the strand is the lock
    std::atomic<int> running{0}, overlaps{0};
    for (int i = 0; i < 2000; ++i)
        asio::post(strand, [&, i] {
            if (running.fetch_add(1) != 0) ++overlaps;
            order.push_back(i);
            running.fetch_sub(1);
        });
    pool.join();
    CHECK(overlaps.load() == 0);
    REQUIRE(order.size() == 2000);
    for (int i = 0; i < 2000; ++i) REQUIRE(order[static_cast<std::size_t>(i)] == i);
}
