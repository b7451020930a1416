// What an SqsDestination decides, without any I/O: which messages wait for room, which are
// staged, which go out together in which request, when a failed one is tried again, when a
// message's deadline has passed, what a reply means for each message, and when a close is done.
// It takes events (a message accepted, the time reached, a call answered, a payload staged, a
// cancellation, close) with the time they happen at, and answers with actions (make this call,
// stage this body, complete these messages, cancel that call) and the time it next needs to be
// woken at. SqsDestination runs it on its strand and does what it says; the unit tests drive
// it with a made-up clock. Every message is in exactly one place at a time: the waiting room
// (no capacity yet), staging, the ready queue, a request on the wire, or the backoff queue.
// Private to the library.
#pragma once

#include "aws/clock_skew.hpp"
#include "core/destination_counters.hpp"

#include <outbox/http_client.hpp>
#include <outbox/payload_stager.hpp>
#include <outbox/sqs_destination.hpp>
#include "aws/sqs/sqs_protocol.hpp"

#include <boost/container/deque.hpp>
#include <boost/container/static_vector.hpp>
#include <boost/intrusive/set.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace outbox::detail::sqs {

class SendMachine {
  public:
    using Clock = std::chrono::steady_clock;
    using Time = Clock::time_point;
    using error_code = boost::system::error_code;

    /// An SQS JSON-protocol call to sign and send, to be answered by `deadline` (the earliest
    /// of its messages'; max when none) through call_answered(id, ...).
    struct Call {
        std::uint64_t id = 0;
        const char* action = "";  // a literal ("SendMessageBatch", ...): outlives the call
        std::string body{};
        Time deadline = Time::max();
    };
    /// A body to upload to S3, answered through staged(seq, ...).
    struct Stage {
        std::uint64_t seq = 0;
        std::string body{};
    };
    /// A message done with: its handler gets `ec` and `receipt`; on failure `message` goes to
    /// the dead-letter handler.
    struct Completion {
        std::uint64_t seq = 0;
        error_code ec{};
        Receipt receipt{};
        Message message{};
        Time accepted_at{};
    };
    /// What to do after an event, in this order: complete, cancel calls, make calls, stage.
    struct Actions {
        std::vector<Completion> completions;
        std::vector<std::uint64_t> cancel_calls;  // terminal cancellation of calls on the wire
        std::vector<Call> calls;
        std::vector<Stage> stages;
        /// Close is done: complete its handler with this; nothing goes on the wire any more.
        std::optional<error_code> closed;
        bool empty() const {
            return completions.empty() && cancel_calls.empty() && calls.empty() && stages.empty() &&
                   !closed;
        }
    };

    /// `config` is read, never copied: it must outlive the machine. `queue_url` empty: the
    /// queue is looked up by config.queue_name first.
    SendMachine(const SqsDestinationConfig& config, std::string queue_url, bool fifo,
                DestinationCounters& stats, std::uint32_t seed);
    ~SendMachine();
    SendMachine(const SendMachine&) = delete;
    SendMachine& operator=(const SendMachine&) = delete;

    // ---- events ----------------------------------------------------------------------------
    /// A message that passed the checks that need no queue facts; `size` is what SQS counts.
    /// Returns its sequence number (completions name it).
    std::uint64_t accept(Message&& message, std::size_t size, Time now, Actions& out);
    std::uint64_t accept(const Message& message, std::size_t size, Time now, Actions& out) {
        return accept(Message(message), size, now, out);
    }
    /// Its sender gave up: it fails unless it is on the wire or being staged (then its outcome
    /// decides).
    void cancel(std::uint64_t seq, Time now, Actions& out);
    /// The time next_wake() asked for (or later) has come.
    void wake(Time now, Actions& out);
    void call_answered(std::uint64_t call, error_code ec, HttpResponse res, Time now, Actions& out);
    void staged(std::uint64_t seq, error_code ec, StagedPayload payload, Time now, Actions& out);
    /// No new messages; what backs off is sent at once. Done when every message is.
    void close(Time now, Actions& out);
    /// The close deadline passed, or the destination is destroyed: every message not on the
    /// wire fails with `why`, calls on the wire are cancelled.
    void abandon(const std::string& why, Actions& out);

    // ---- what the shell asks ---------------------------------------------------------------
    /// When wake() must be called next; nullopt: only another event can change anything.
    std::optional<Time> next_wake() const;
    const std::string& queue_url() const { return queue_url_; }
    bool fifo() const { return fifo_; }
    /// The time to sign with: the local clock, corrected by what the service said.
    std::chrono::system_clock::time_point signing_time() const { return clock_.now(); }
    /// The session token of the latest request: it never reaches a receipt or a log.
    void set_session_token(const std::string& token) {
        if (token != session_token_) session_token_ = token;
    }
    /// The close deadline passed or the destination is destroyed: nothing new goes out.
    bool abandoned() const { return abandoned_; }
    bool stopped() const { return stopped_; }
    std::size_t messages() const { return entries_.size(); }

  private:
    enum class Place { waiting_room, staging, ready, request, backoff, leaving };
    enum class QueueState { unresolved, resolving, ready };
    enum class CallKind { get_queue_url, get_queue_attributes, send };

    // Links an Entry carries in the two ordered sets it can be in: they cost no allocation
    // of their own, where std::map and std::set nodes cost one each per message.
    using SeqLink = boost::intrusive::set_member_hook<>;
    struct Entry {
        SeqLink by_seq{};           // entries_
        SeqLink not_on_the_wire{};  // not_on_the_wire_
        std::uint64_t seq = 0;
        Message message;
        std::size_t size = 0;       // counted against max_in_flight_bytes
        std::size_t wire_size = 0;  // what SQS counts: after staging, the URL message
        Place place = Place::waiting_room;
        std::string staged_url{};
        std::string staged_key{};
        std::uint32_t attempts = 0;
        bool maybe_delivered = false;  // an earlier attempt's reply was lost
        bool solo = false;             // send alone: its batch was refused as a whole
        Time accepted_at{};
        Time deadline = Time::max();  // accepted_at + message_deadline
        Time ready_at{};
        Diagnostics last_diagnostics{};
        // The body's MD5 once hashed: with its batch's reply, or with an earlier reply's to
        // fill SIMD lanes the batch left empty. The body no longer changes by then.
        std::optional<Md5Hex> body_md5{};
    };
    struct Request {
        CallKind kind = CallKind::send;
        std::vector<Entry*> entries;  // send
        bool batch = false;
    };

    // acceptance and room
    bool has_room(std::size_t size) const;
    void admit(Entry& e, Actions& out);
    void admit_waiting(Actions& out);
    bool should_stage(const Entry& e) const;
    void stage(Entry& e, Actions& out);
    bool check_against_queue(Entry& e, Actions& out);
    void take_out(Entry& e);
    // deadlines
    std::optional<Time> earliest_waiting_deadline() const;
    void move_to(Entry& e, Place place);
    void expire_due(Actions& out);
    // completion
    void complete(Entry& e, error_code ec, Receipt&& receipt, Actions& out);
    void fail(Entry& e, error_code ec, std::string why, Actions& out);
    void fail_with_last(Entry& e, error_code ec, const Diagnostics& d, Actions& out);
    // queue lookup
    void resolve(Actions& out);
    void resolve_failed(error_code ec, const Diagnostics& d, const HttpResponse* res, Actions& out);
    void on_get_queue_url(error_code ec, HttpResponse& res, Actions& out);
    void on_get_queue_attributes(error_code ec, HttpResponse& res, Actions& out);
    void resolved(std::size_t limit, Actions& out);
    std::uint64_t start_call(CallKind kind, const char* action, std::string body, Time deadline,
                             std::shared_ptr<Request> request, Actions& out);
    // batching
    bool group_busy(const Entry& e) const;
    void hold_group(const Entry& e);
    void release_group(const Entry& e);
    // Positions in ready_ of a batch's entries: at most ten, so kept without allocating.
    using Picked = boost::container::static_vector<std::size_t, max_batch_entries>;
    Picked pick_batch(bool& full) const;
    void dispatch_ready(Actions& out);
    void send_batch(std::shared_ptr<Request> request, Actions& out);
    void on_send_response(Request& request, error_code ec, HttpResponse& res, Actions& out);
    // MD5 of the bodies of `entries` not hashed yet, and of the next ready ones' as the lanes
    // have room: those are sent once the queue is known, as they are now.
    void hash_bodies(const std::vector<Entry*>& entries);
    // `body_md5`: the body's MD5, computed with the batch's others (nullptr: computed here).
    void deliver(Entry& e, SentEntry& sent, std::string_view request_id, const Md5Hex* body_md5,
                 Actions& out);
    // retries
    std::chrono::milliseconds backoff_delay(std::uint32_t attempts, const HttpResponse* res);
    void retry_or_fail(Entry& e, error_code ec, const Diagnostics& d, const HttpResponse* res,
                       Actions& out);
    void requeue_now(Entry& e, error_code ec, const Diagnostics& d, Actions& out);
    void insert_ready(Entry& e);
    void release_backoff(Time until);
    bool correct_clock(const HttpResponse& res);
    // close
    void fail_abandoned(Entry& e, Actions& out);
    void maybe_finish_close(Actions& out);

    std::string redact(std::string text) const;

    const SqsDestinationConfig& config_;
    DestinationCounters& stats_;
    Time now_{};  // of the event being handled

    std::string queue_url_;
    bool fifo_ = false;
    QueueState queue_state_ = QueueState::unresolved;
    std::size_t max_message_size_ = 0;
    std::optional<bool> content_based_dedup_;
    std::uint32_t resolve_attempts_ = 0;
    Time resolve_retry_at_ = Time::max();

    struct SeqOf {
        using type = std::uint64_t;
        std::uint64_t operator()(const Entry& e) const { return e.seq; }
    };
    template <SeqLink Entry::*link>
    using EntriesBySeq =
        boost::intrusive::set<Entry, boost::intrusive::member_hook<Entry, SeqLink, link>,
                              boost::intrusive::key_of_value<SeqOf>>;

    // Messages, by seq: the oldest first, which is also the order of their deadlines. The
    // set owns them (made in accept, deleted in complete and the destructor).
    std::uint64_t next_seq_ = 1;
    EntriesBySeq<&Entry::by_seq> entries_;
    // Entries of completed messages, reset, for the next ones while messages keep coming: a
    // message's state then costs no allocation. At most max_spare_entries; none once idle.
    std::vector<std::unique_ptr<Entry>> spare_entries_;
    static constexpr std::size_t max_spare_entries = 256;
    std::unique_ptr<Entry> new_entry();
    void recycle(Entry* e) noexcept;
    // Boost's deque allocates nothing until its first element (std::deque takes 576 bytes
    // at construction): an idle destination among thousands carries none.
    boost::container::deque<Entry*> waiting_room_;
    boost::container::deque<Entry*> ready_;  // by seq
    std::multimap<Time, Entry*> backoff_;
    // Messages not on the wire, by seq: the first has the earliest deadline the timer covers.
    EntriesBySeq<&Entry::not_on_the_wire> not_on_the_wire_;
    std::unordered_map<std::string, std::size_t> busy_groups_;  // FIFO: on the wire or backing off
    std::size_t admitted_ = 0;
    std::size_t admitted_bytes_ = 0;
    std::size_t requests_in_flight_ = 0;  // sends; lookups are not counted
    std::uint64_t next_call_ = 1;
    std::map<std::uint64_t, std::shared_ptr<Request>> calls_;
    Time linger_until_ = Time::max();  // a partly filled batch waits until then

    bool closing_ = false;
    bool abandoned_ = false;  // close deadline passed, or destroyed
    std::string abandon_reason_;
    bool stopped_ = false;  // close done: nothing more goes on the wire

    ClockSkew clock_;
    std::minstd_rand rng_;
    std::string session_token_;
};

}  // namespace outbox::detail::sqs
