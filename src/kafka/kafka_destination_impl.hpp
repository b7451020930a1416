// KafkaDestination::Impl and what it keeps per message, shared by kafka_destination.cpp (sending,
// completing, closing) and kafka_producer.cpp (the producer and librdkafka's callbacks).
#pragma once

#include "core/close_latch.hpp"
#include "core/dead_letter_slot.hpp"
#include "core/destination_counters.hpp"
#include "core/fixed_block_pool.hpp"
#include "core/message_move.hpp"
#include "core/send_completion.hpp"

#include <outbox/kafka_destination.hpp>
#include "kafka/least_bytes.hpp"

#include <librdkafka/rdkafka.h>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace outbox::detail::kafka {

enum class Place { waiting_room, staging, produced };

struct Entry {
    Entry(Message&& m, Destination::SendHandler&& h) noexcept : handler(std::move(h)) {
        detail::move_into_empty_message(message, std::move(m));
    }

    std::uint64_t seq = 0;
    // Beside the body's size: a delivery report reads both, and the entry is cold by then.
    std::chrono::steady_clock::time_point accepted_at = std::chrono::steady_clock::now();
    Message message;
    Destination::SendHandler handler;
    std::vector<std::pair<std::string, std::string>> extra_headers{};  // ce_* (binary mode)
    std::size_t wire_bytes = 0;                                        // value, key and headers
    Place place = Place::waiting_room;
    std::string staged_url{};
    std::string staged_key{};
};

// Entries come from their destination's pool (used with its mutex held) and go back to it.
using EntryPool = detail::FixedBlockPool<Entry>;
struct EntryDeleter {
    EntryPool* pool = nullptr;
    void operator()(Entry* e) const noexcept {
        std::destroy_at(e);
        pool->deallocate(e);
    }
};
using EntryPtr = std::unique_ptr<Entry, EntryDeleter>;

// librdkafka's handles, owned: destroyed (at the latest with this object) in the order that
// lets rd_kafka_destroy return.
struct KafkaHandles {
    rd_kafka_t* rk = nullptr;
    rd_kafka_topic_t* rkt = nullptr;
    rd_kafka_queue_t* main_queue = nullptr;
    rd_kafka_queue_t* admin_queue = nullptr;

    KafkaHandles() = default;
    KafkaHandles(KafkaHandles&& other) noexcept { *this = std::move(other); }
    KafkaHandles& operator=(KafkaHandles&& other) noexcept {
        if (this == &other) return *this;
        destroy();
        rk = std::exchange(other.rk, nullptr);
        rkt = std::exchange(other.rkt, nullptr);
        main_queue = std::exchange(other.main_queue, nullptr);
        admin_queue = std::exchange(other.admin_queue, nullptr);
        return *this;
    }
    ~KafkaHandles() { destroy(); }

    void destroy();
};

// What message.max.bytes and least-bytes count: value, key and headers.
inline std::size_t wire_size(
    const Message& m, std::size_t key_bytes,
    const std::vector<std::pair<std::string, std::string>>& extra_headers) {
    std::size_t n = m.body.size() + key_bytes;
    for (const auto& a : m.attributes) n += a.name.size() + a.value.size();
    for (const auto& [name, value] : extra_headers) n += name.size() + value.size();
    return n;
}

}  // namespace outbox::detail::kafka

namespace outbox {

// The Impl's code names these unqualified, as when it was one file.
using detail::kafka::Entry;
using detail::kafka::EntryPtr;
using detail::kafka::KafkaHandles;
using detail::kafka::Place;
using detail::kafka::wire_size;

struct KafkaDestination::Impl : std::enable_shared_from_this<KafkaDestination::Impl> {
    Impl(boost::asio::any_io_executor ex, KafkaDestinationConfig cfg);
    ~Impl();

    boost::asio::any_io_executor executor;
    KafkaDestinationConfig config;
    std::size_t staging_threshold = 0;

    // Written once in the constructor; librdkafka's callbacks reach the Impl through these.
    KafkaHandles handles;
    detail::LeastBytesBalancer least_bytes;
    std::atomic<std::uint32_t> round_robin_next{0};
    // librdkafka signals "events queued" from its own threads; the waker posts a poll.
    struct Waker {
        std::weak_ptr<Impl> impl;
        boost::asio::any_io_executor executor;
    };
    std::unique_ptr<Waker> waker;

    std::mutex mutex;  // guards everything below, and every call into librdkafka
    std::uint64_t next_seq = 1;
    // Every Entry's memory: blocks taken from the heap a chunk at a time and reused while
    // messages keep coming (a burst of sends costs an allocation per chunk, not per message),
    // all given back once the destination is idle. Declared before what holds entries.
    detail::kafka::EntryPool entry_pool;
    // Messages waiting for room in librdkafka's queue (or for the topic), in seq order: a
    // deque rather than a map, as at full speed most messages pass through it.
    std::deque<EntryPtr> waiting_room;
    std::unordered_map<std::uint64_t, EntryPtr> staging;  // by seq
    std::size_t produced = 0;
    bool topic_ready = true;
    std::string topic_creation_error{};
    std::optional<boost::asio::any_io_executor> work;  // keeps run() going while messages are out

    // The last connection-level error, for messages that time out because of it.
    Diagnostics connection_error{};
    // Set by an authentication or TLS failure: messages purged because of it fail with it.
    std::optional<std::pair<boost::system::error_code, Diagnostics>> refusal{};
    // When set_sasl_credentials last ran: for rotation_grace after it an authentication
    // failure is taken for a handshake begun with the old credentials, and fails nothing.
    std::optional<std::chrono::steady_clock::time_point> credentials_rotated_at{};
    static constexpr std::chrono::seconds rotation_grace{10};
    // Why messages were purged otherwise: "the close deadline passed", "the destination was
    // destroyed".
    std::string purge_reason = "purged";

    // Completions gathered while serve() holds the mutex, run once it is released.
    detail::CompletionChunks* collecting = nullptr;
    // Empty; serve() reuses their room while messages are out, and gives it back when idle.
    detail::CompletionChunks spare_completions;
    static constexpr std::size_t max_kept_completion_chunks =
        4096 / detail::CompletionChunks::chunk_size;

    bool closing = false;
    bool close_deadline_passed = false;
    bool stopped = false;  // the destructor ran: librdkafka is gone
    detail::CloseLatch close_latch;
    boost::asio::steady_timer close_timer;

    detail::DestinationCounters stats;
    detail::DeadLetterSlot dead_letters;

    // ---- librdkafka callbacks (inside rd_kafka_poll, mutex held): kafka_producer.cpp -----

    static void on_delivery(rd_kafka_t*, const rd_kafka_message_t* m, void* opaque);
    static void on_error(rd_kafka_t*, int err, const char* reason, void* opaque);
    static void on_log(const rd_kafka_t* rk, int level, const char* facility, const char* buf);
    static int32_t partition_least_bytes(const rd_kafka_topic_t*, const void*, size_t,
                                         int32_t partition_cnt, void* rkt_opaque, void* msg_opaque);
    static int32_t partition_round_robin(const rd_kafka_topic_t* rkt, const void*, size_t,
                                         int32_t partition_cnt, void* rkt_opaque, void*);
    static void on_queue_event(rd_kafka_t*, void* opaque);
    // Amazon MSK IAM: librdkafka asks for a token on its SASL thread; it is made on the
    // executor from the credentials provider, then handed back (thread-safe calls).
    static void on_token_refresh(rd_kafka_t*, const char* oauthbearer_config, void* opaque);
    void refresh_token();
    void ask_for_token();

    std::string redact(std::string text) const;
    void log(LogLevel level, const std::string& message) const;

    void serve_admin_results();
    void topic_created(rd_kafka_event_t* ev);
    void connection_failed(rd_kafka_resp_err_t err, const char* reason);

    // ---- serving, sending, completing, closing: kafka_destination.cpp --------------------

    void serve();
    void delivered(const rd_kafka_message_t& m);
    Diagnostics explain(rd_kafka_resp_err_t err, boost::system::error_code& ec, std::string text);
    std::string fatal_reason() const;

    EntryPtr new_entry(Message&& m, Destination::SendHandler&& h);
    bool idle() const { return waiting_room.empty() && staging.empty() && produced == 0; }
    void settle_if_idle();
    void wait_for_room(EntryPtr owned);
    void accept(EntryPtr owned);
    bool should_stage(const Entry& e) const;
    void stage(Entry& e);
    void staged(std::uint64_t seq, boost::system::error_code ec, StagedPayload payload);
    std::string_view key_of(const Entry& e) const;
    bool produce(EntryPtr& owned);
    void produce_waiting();
    void install_cancellation(Entry& e);
    void cancel(std::uint64_t seq);

    // fill_receipt(Receipt&) writes the receipt where the completion keeps it.
    template <class FillReceipt>
    void complete(EntryPtr e, boost::system::error_code ec, FillReceipt&& fill_receipt);
    void fail(EntryPtr e, boost::system::error_code ec, Diagnostics d);
    void abandon_all(const std::string& why, int purge_flags);

    void close(std::chrono::milliseconds deadline, CloseHandler handler);
    void close_deadline();
    void maybe_finish_close();
    void stop();
};

}  // namespace outbox
