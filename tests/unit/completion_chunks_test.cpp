// detail::CompletionChunks: completions gathered across several chunks run once each, in the
// order they were added; a handler that throws leaves none of the rest behind; the room is
// kept for the next round until it is released.
#include "catch.hpp"

#include "core/send_completion.hpp"

#include <boost/asio/io_context.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace {

using outbox::detail::CompletionChunks;

struct Fixture {
    boost::asio::io_context io;
    outbox::detail::DestinationCounters stats;
    outbox::detail::DeadLetterSlot dead_letters;
    outbox::Logger logger;
    std::string target = "topic";
    std::vector<std::string> ran;  // message ids, in the order their handlers ran

    // A completion whose handler records the receipt's message id, and throws when told to.
    void add(CompletionChunks& chunks, int n, int throw_at = -1) {
        outbox::Destination::SendHandler handler = [this, n, throw_at](boost::system::error_code ec,
                                                                       outbox::Receipt&& r) {
            CHECK(!ec);
            ran.push_back(r.message_id);
            if (n == throw_at) throw std::runtime_error("handler failed");
        };
        outbox::Message m;
        m.body = "body " + std::to_string(n);
        chunks.emplace_back(
            stats, dead_letters, logger, target, std::move(handler), boost::system::error_code{},
            [n](outbox::Receipt& r) { r.message_id = "id-" + std::to_string(n); }, std::move(m),
            std::chrono::steady_clock::now());
    }

    std::vector<std::string> expected(int from, int to) const {
        std::vector<std::string> ids;
        for (int n = from; n < to; ++n) ids.push_back("id-" + std::to_string(n));
        return ids;
    }
};

}  // namespace

TEST_CASE("completions across chunks run once each, in order, and the room is kept") {
    Fixture f;
    CompletionChunks chunks;
    const int count = static_cast<int>(CompletionChunks::chunk_size) * 2 + 17;  // three chunks
    for (int n = 0; n < count; ++n) f.add(chunks, n);
    CHECK(chunks.size() == static_cast<std::size_t>(count));
    CHECK(chunks.chunks_kept() == 3);
    chunks.run_and_clear(f.io.get_executor());
    CHECK(f.ran == f.expected(0, count));
    CHECK(chunks.size() == 0);
    CHECK(chunks.chunks_kept() == 3);  // room kept for the next burst
    CHECK(f.stats.snapshot().delivered == static_cast<std::uint64_t>(count));

    // A smaller round reuses the room and runs only its own.
    f.ran.clear();
    for (int n = 0; n < 5; ++n) f.add(chunks, n);
    chunks.run_and_clear(f.io.get_executor());
    CHECK(f.ran == f.expected(0, 5));
    CHECK(chunks.chunks_kept() == 3);

    chunks.release();
    CHECK(chunks.chunks_kept() == 0);
    CHECK(chunks.size() == 0);
}

TEST_CASE("a completion that throws leaves the rest posted, in order, none lost") {
    const int chunk = static_cast<int>(CompletionChunks::chunk_size);
    // A throw in the first chunk, in a later one, and at the last of an exact number of chunks.
    for (const auto& [count, throw_at] :
         {std::pair{chunk * 2 + 3, 10}, std::pair{chunk * 2 + 3, chunk + 7},
          std::pair{chunk * 2, chunk * 2 - 1}}) {
        INFO("count " << count << ", throw at " << throw_at);
        Fixture f;
        CompletionChunks chunks;
        for (int n = 0; n < count; ++n) f.add(chunks, n, throw_at);
        CHECK_THROWS_AS(chunks.run_and_clear(f.io.get_executor()), std::runtime_error);
        CHECK(f.ran == f.expected(0, throw_at + 1));
        CHECK(chunks.size() == 0);
        f.io.run();  // the posted rest
        CHECK(f.ran == f.expected(0, count));
    }
}

TEST_CASE("completions gathered before an exception are posted, and room can be trimmed") {
    Fixture f;
    CompletionChunks chunks;
    const int count = static_cast<int>(CompletionChunks::chunk_size) * 3 + 1;
    for (int n = 0; n < count; ++n) f.add(chunks, n);
    CHECK(chunks.chunks_kept() == 4);
    chunks.post_and_clear(f.io.get_executor());
    CHECK(chunks.size() == 0);
    CHECK(f.ran.empty());  // posted, not run here
    f.io.run();
    CHECK(f.ran == f.expected(0, count));

    chunks.keep_at_most(2);
    CHECK(chunks.chunks_kept() == 2);
    f.ran.clear();
    f.io.restart();
    for (int n = 0; n < count; ++n) f.add(chunks, n);  // grows again past the trimmed room
    CHECK(chunks.chunks_kept() == 4);
    chunks.run_and_clear(f.io.get_executor());
    CHECK(f.ran == f.expected(0, count));
}
