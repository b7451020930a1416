// ReadAheadWindow: when the reader of `outbox send` and `outbox enqueue` may go on, and when a
// completion must wake it.
#include "catch.hpp"

#include "read_ahead_window.hpp"

using outbox::cli::ReadAheadWindow;

TEST_CASE("read-ahead window: full by count, the reader goes on when an eighth is free") {
    ReadAheadWindow w(16, 0);
    for (int i = 0; i < 16; ++i) {
        REQUIRE(w.has_room(100));
        w.add(100);
    }
    CHECK_FALSE(w.has_room(100));
    w.start_waiting(100);
    CHECK_FALSE(w.remove(100));  // 15 outstanding: not yet
    CHECK_FALSE(w.reader_may_go());
    CHECK(w.remove(100));  // 14 = 16 - 16/8: wake the reader
    CHECK(w.reader_may_go());
    w.stop_waiting();
    CHECK_FALSE(w.remove(100));  // nobody waits, and 13 are still outstanding
    CHECK(w.outstanding() == 13);
}

TEST_CASE("read-ahead window: full by bytes, and a message larger than the window") {
    ReadAheadWindow w(100, 800);
    w.add(400);
    w.add(400);
    CHECK_FALSE(w.has_room(1));
    w.start_waiting(300);
    CHECK(w.remove(400));  // 400 outstanding: at most 700 and room for 300 more
    w.stop_waiting();
    w.add(300);

    // A message larger than the whole window waits for nothing to be outstanding.
    w.start_waiting(5000);
    CHECK_FALSE(w.remove(400));
    CHECK(w.remove(300));  // empty
    CHECK(w.reader_may_go());
    w.stop_waiting();
    CHECK(w.has_room(5000));
}

TEST_CASE("read-ahead window: the last completion always wakes (the final wait)") {
    ReadAheadWindow w(8192, 0);
    w.add(0);
    w.add(0);
    CHECK_FALSE(w.remove(0));
    CHECK(w.remove(0));
    CHECK(w.outstanding() == 0);
}

TEST_CASE("read-ahead window: a batch waits for room for all of it") {
    ReadAheadWindow w(16, 0);
    REQUIRE(w.has_room(10, 1000));
    w.add(10, 1000);
    CHECK_FALSE(w.has_room(10, 1000));  // 20 > 16
    CHECK(w.has_room(6, 600));
    w.start_waiting(10, 1000);
    for (int i = 0; i < 3; ++i) CHECK_FALSE(w.remove(100));  // 7 outstanding: 17 > 16
    CHECK(w.remove(100));                                    // 6 + 10 = 16: room for the batch
    w.stop_waiting();

    // A batch larger than the window goes when nothing is outstanding.
    CHECK_FALSE(w.has_room(40, 4000));
    w.start_waiting(40, 4000);
    for (int i = 0; i < 5; ++i) CHECK_FALSE(w.remove(100));
    CHECK(w.remove(100));
    CHECK(w.has_room(40, 4000));
}
