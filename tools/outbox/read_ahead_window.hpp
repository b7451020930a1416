// The read-ahead window of `outbox send` and `outbox enqueue`: how far the reading thread may
// run ahead of deliveries, and when a reader that waits for room is woken. Plain arithmetic
// under the caller's mutex; the caller keeps the condition variable and the stop signal.
#pragma once

#include <cstddef>

namespace outbox::cli {

class ReadAheadWindow {
  public:
    /// At most `messages` outstanding and, when `bytes` is not zero, at most that many bytes
    /// (a message, or a batch, alone may exceed it: it goes when nothing else is outstanding).
    ReadAheadWindow(std::size_t messages, std::size_t bytes) : messages_(messages), bytes_(bytes) {}

    /// Whether `count` messages of `size` bytes in all may go now, without waiting.
    bool has_room(std::size_t count, std::size_t size) const {
        return outstanding_ == 0 || (outstanding_ + count <= messages_ &&
                                     (bytes_ == 0 || outstanding_bytes_ + size <= bytes_));
    }
    bool has_room(std::size_t size) const { return has_room(1, size); }

    /// The reader waits for room for `count` messages of `size` bytes in all. Once the window
    /// was full it goes on only when an eighth is free again, so that it is woken once per
    /// many completions, not after each (a wake per message cost both threads a futex call).
    void start_waiting(std::size_t count, std::size_t size) {
        waiting_ = true;
        waiting_count_ = count;
        waiting_size_ = size;
    }
    void start_waiting(std::size_t size) { start_waiting(1, size); }
    void stop_waiting() { waiting_ = false; }
    bool reader_may_go() const {
        return outstanding_ == 0 ||
               (outstanding_ <= messages_ - messages_ / 8 &&
                outstanding_ + waiting_count_ <= messages_ &&
                (bytes_ == 0 || (outstanding_bytes_ <= bytes_ - bytes_ / 8 &&
                                 outstanding_bytes_ + waiting_size_ <= bytes_)));
    }

    void add(std::size_t count, std::size_t size) {
        outstanding_ += count;
        outstanding_bytes_ += size;
    }
    void add(std::size_t size) { add(1, size); }
    /// A message is done. True when a waiter must be woken: the reader, now that it may go
    /// on, or whoever waits for nothing to be outstanding.
    bool remove(std::size_t size) {
        --outstanding_;
        outstanding_bytes_ -= size;
        return outstanding_ == 0 || (waiting_ && reader_may_go());
    }

    std::size_t outstanding() const { return outstanding_; }

  private:
    std::size_t messages_, bytes_;
    std::size_t outstanding_ = 0, outstanding_bytes_ = 0;
    bool waiting_ = false;
    std::size_t waiting_count_ = 0, waiting_size_ = 0;
};

}  // namespace outbox::cli
