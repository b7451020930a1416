// The PostgreSQL store's claims and settlements: leases taken on due events, renewed,
// released, and settled as delivered or failed. Apart from the connection and schema code.
#include "outbox/postgresql_store_impl.hpp"

#include "outbox/event_codec.hpp"
#include "outbox/postgresql_text.hpp"

#include <libpq-fe.h>

#include <algorithm>
#include <chrono>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace outbox::detail::postgresql {

std::vector<StoredEvent> PostgresqlStore::claim(SystemTime now, std::size_t limit,
                                                const TargetBound& targets) {
    std::vector<StoredEvent> out;
    // A connection lost after some rounds committed: what they claimed goes out now.
    retrying("claim", [&] {
        try {
            claim_events(now, limit, targets, out);
        } catch (const ConnectionLost&) {
            if (out.empty()) throw;
        } catch (const StoreError&) {
            if (out.empty()) throw;
        }
        return 0;
    });
    return out;
}

void PostgresqlStore::settle(std::span<const EventOutcome> outcomes) {
    if (outcomes.empty()) return;
    retrying("settle", [&] {
        settle_outcomes(outcomes);
        return 0;
    });
    for (const EventOutcome& o : outcomes) claimed_.erase(o.id);
}

void PostgresqlStore::release_claims() {
    if (claimed_.empty()) return;
    std::vector<EventId> ids;
    for (const auto& c : claimed_) ids.push_back(c.first);
    retrying("releasing claims", [&] {
        const std::string array = int_array(ids);
        exec_prepared(release_sql, {array.c_str(), me_.c_str()}, "releasing claims");
        return 0;
    });
    claimed_.clear();
}

void PostgresqlStore::renew_claims(SystemTime now) {
    std::vector<EventId> ids;
    for (const auto& [id, c] : claimed_)
        if (c.renew_at <= now) ids.push_back(id);
    touch_breakers(now);
    if (ids.empty()) return;
    const std::string array = int_array(ids), at = std::to_string(to_ms(now));
    const std::string lease = std::to_string(
        std::chrono::duration_cast<std::chrono::milliseconds>(options_.claim_lease).count());
    retrying("renewing claims", [&] {
        exec_prepared(renew_sql, {array.c_str(), me_.c_str(), at.c_str(), lease.c_str()},
                      "renewing claims");
        return 0;
    });
    for (EventId id : ids) claimed_[id].renew_at = now + options_.claim_lease / 2;
}

// ---- claims and settlements -------------------------------------------------------

void PostgresqlStore::claim_events(SystemTime now, std::size_t limit, const TargetBound& targets,
                                   std::vector<StoredEvent>& out) {
    std::unordered_map<std::string, std::size_t> taken;  // per target, by this claim
    const std::string due = std::to_string(to_ms(now));
    const std::string lease = std::to_string(
        std::chrono::duration_cast<std::chrono::milliseconds>(options_.claim_lease).count());
    // Events found behind their group's head are marked and the claim goes on, so a long
    // group costs one pass, not one per claim.
    // Another relay marking holds the marks lock: when a window held only events behind
    // their heads, the next round waits for it (briefly) rather than the relay polling.
    bool wait_for_marks = false;
    for (int round = 0; round < 16 && out.size() < limit; ++round) {
        const std::size_t before = out.size();
        // The bound per target, less what earlier rounds took. While every known target
        // has room, one claim in due order takes no more than the least of them (so none
        // goes past its share, and nothing is read only to be left); once one has little or
        // none, the claim goes target by target and passes over it.
        std::string skip = "{", known = "{", rooms = "{";
        std::size_t asked = std::min<std::size_t>(limit - out.size(), 1u << 30);
        if (targets.bounded()) {
            std::unordered_map<std::string, std::size_t> left;
            for (const auto& [target, n] : targets.out) left[target] = targets.room(target);
            for (const auto& [target, n] : targets.cap) left[target] = targets.room(target);
            for (const auto& [target, n] : taken) {
                const std::size_t r = targets.room(target);
                left[target] = r > n ? r - n : 0;
            }
            // A target not out yet.
            std::size_t least = targets.per_target != 0 ? targets.per_target : asked;
            for (const auto& [target, r] : left) {
                // Little room left: passed over, rather than claiming a few at a time (a
                // capped target is taken within its cap, however small).
                if (r == 0 || (targets.per_target != 0 && !targets.cap.count(target) &&
                               r < targets.per_target / 4)) {
                    if (skip.size() > 1) skip.push_back(',');
                    detail::append_array_text(skip, target);
                    continue;
                }
                least = std::min(least, r);
                if (known.size() > 1) {
                    known.push_back(',');
                    rooms.push_back(',');
                }
                detail::append_array_text(known, target);
                rooms += std::to_string(std::min(r, asked));  // fits a bigint
            }
            if (skip.size() == 1 && targets.cap.empty()) asked = std::min(asked, least);
        }
        const bool by_target = skip.size() > 1 || !targets.cap.empty();
        for (std::string* s : {&skip, &known, &rooms}) s->push_back('}');
        const std::string count = std::to_string(asked),
                          per_target = std::to_string(targets.per_target != 0
                                                          ? std::min(targets.per_target, asked)
                                                          : asked);
        Transaction tx(*this, "claim", wait_for_marks ? begin_claim_waiting : begin_claim);
        const bool may_mark = PQgetvalue(tx.opened(), 0, 0)[0] == 't';
        const char* mark = may_mark ? "t" : "f";
        Result r =
            by_target
                ? exec_prepared(claim_by_target_sql,
                                {due.c_str(), count.c_str(), lease.c_str(), me_.c_str(), mark,
                                 skip.c_str(), known.c_str(), rooms.c_str(), per_target.c_str()},
                                "claim")
                : exec_prepared(claim_sql,
                                {due.c_str(), count.c_str(), lease.c_str(), me_.c_str(), mark},
                                "claim");
        tx.commit();
        const int rows = PQntuples(r.get());
        const int behind_col = PQfnumber(r.get(), "behind"), ours_col = PQfnumber(r.get(), "ours"),
                  cap_col = PQfnumber(r.get(), "cap");
        const auto seen = static_cast<std::size_t>(rows);
        std::size_t behind = 0;
        // Target by target: whether some target gave all its cap (it may have more).
        bool capped = false;
        if (by_target) {
            std::unordered_map<std::string_view, std::size_t> per_target_seen;
            for (int i = 0; i < rows; ++i) {
                const std::string_view target(PQgetvalue(r.get(), i, 1),
                                              PQgetlength(r.get(), i, 1));
                const auto cap = static_cast<std::size_t>(get_i64(r.get(), i, cap_col));
                capped |= ++per_target_seen[target] >= cap;
            }
        }
        for (int i = 0; i < rows; ++i) {
            if (get_bool(r.get(), i, behind_col)) {
                ++behind;
                continue;
            }
            if (!get_bool(r.get(), i, ours_col)) continue;  // another relay's, just claimed
            StoredEvent e = read_event(r.get(), i);
            ++taken[e.target];
            claimed_[e.id] = Claim{!e.message.group_id.empty(), now + options_.claim_lease / 2};
            out.push_back(std::move(e));
        }
        // Another round when this one passed over due events it may take next time: marked
        // ones behind their heads, another relay's, a target's beyond its room. (Target by
        // target, a round stops short of `asked` at each target's cap.)
        if (seen < asked && !capped) break;  // nothing more is due
        const std::size_t passed = seen - (out.size() - before);
        if (passed == 0) continue;       // a round held to a target's room: the next goes on
        if (behind != 0 && !may_mark) {  // unmarked, the same ones would come back
            if (out.size() != before || wait_for_marks) break;
            wait_for_marks = true;
        }
    }
}

void PostgresqlStore::settle_outcomes(std::span<const EventOutcome> outcomes) {
    std::vector<EventId> delivered;
    std::vector<const EventOutcome*> failed;
    bool grouped = false;
    for (const EventOutcome& o : outcomes) {
        auto it = claimed_.find(o.id);
        grouped |= it == claimed_.end() || it->second.grouped;  // unknown: assume a group
        if (o.kind == EventOutcome::Kind::delivered)
            delivered.push_back(o.id);
        else
            failed.push_back(&o);
    }
    // A new group head is promoted only under the marks lock (see the top of postgresql_store.cpp).
    Transaction tx(*this, "settle", grouped ? begin_grouped_settle : begin_settle);
    if (!delivered.empty()) {
        const std::string ids = int_array(delivered);
        exec_prepared(delete_sql, {ids.c_str()}, "settle");
    }
    if (!failed.empty()) {
        std::string ids = "{", attempts = "{", next = "{", dead = "{", errors = "{";
        for (const EventOutcome* o : failed) {
            if (ids.size() > 1)
                for (std::string* s : {&ids, &attempts, &next, &dead, &errors}) s->push_back(',');
            // Appended piece by piece: GCC 12 at -O3 warns (-Wrestrict) on "," + std::string&&.
            ids += std::to_string(o->id);
            attempts += std::to_string(o->attempts);
            next += std::to_string(to_ms(o->next_attempt_at));
            dead.push_back(o->kind == EventOutcome::Kind::dead ? 't' : 'f');
            detail::append_array_text(errors, o->error);
        }
        for (std::string* s : {&ids, &attempts, &next, &dead, &errors}) s->push_back('}');
        Result r = exec_prepared(fail_sql,
                                 {ids.c_str(), attempts.c_str(), next.c_str(), dead.c_str(),
                                  errors.c_str(), me_.c_str()},
                                 "settle");
        std::string targets = "{", groups = "{";
        for (int i = 0; i < PQntuples(r.get()); ++i) {
            if (!get_bool(r.get(), i, 2) || PQgetlength(r.get(), i, 1) == 0) continue;
            if (targets.size() > 1) {
                targets.push_back(',');
                groups.push_back(',');
            }
            detail::append_array_text(targets, get_bytes(r.get(), i, 0));
            detail::append_array_text(groups, get_bytes(r.get(), i, 1));
        }
        if (targets.size() > 1) {
            targets.push_back('}');
            groups.push_back('}');
            exec_prepared(promote_sql, {targets.c_str(), groups.c_str()}, "settle");
        }
    }
    tx.commit();
}

std::string PostgresqlStore::int_array(const std::vector<EventId>& ids) {
    std::string s = "{";
    for (EventId id : ids) {
        if (s.size() > 1) s.push_back(',');
        s += std::to_string(id);
    }
    s.push_back('}');
    return s;
}

StoredEvent PostgresqlStore::read_event(const PGresult* r, int row) const {
    StoredEvent e;
    e.id = get_i64(r, row, 0);
    e.target = get_bytes(r, row, 1);
    e.message.group_id = get_bytes(r, row, 2);
    e.message.body = get_bytes(r, row, 3);
    if (!PQgetisnull(r, row, 4)) {
        std::string why;
        if (!detail::parse_attributes_json(get_bytes(r, row, 4), e.message.attributes, why)) {
            e.damaged = true;
            e.last_error = "its attributes cannot be read: " + why;
        }
    }
    e.message.deduplication_id = get_bytes(r, row, 5);
    e.message.delay = std::chrono::seconds(get_i32(r, row, 6));
    e.enqueued_at = from_ms(get_i64(r, row, 7));
    e.next_attempt_at = from_ms(get_i64(r, row, 8));
    e.attempts = static_cast<std::uint32_t>(get_i32(r, row, 9));
    e.dead = get_bool(r, row, 10);
    if (!e.damaged) e.last_error = get_bytes(r, row, 11);
    return e;
}

}  // namespace outbox::detail::postgresql
