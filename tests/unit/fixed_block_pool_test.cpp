// detail::FixedBlockPool: distinct aligned blocks, the last one given back is the next one
// taken, chunks that grow, and a release only once no block is in use.
#include "catch.hpp"

#include "core/fixed_block_pool.hpp"

#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <vector>

namespace {

struct Object {
    std::string text;
    std::uint64_t number = 0;
    char bytes[40] = {};
};

}  // namespace

TEST_CASE("a fixed-block pool hands out distinct aligned blocks, and reuses what is given back") {
    outbox::detail::FixedBlockPool<Object> pool;
    std::vector<Object*> live;
    std::set<Object*> seen;
    for (int i = 0; i < 1000; ++i) {
        auto* o = ::new (pool.allocate()) Object{std::string(50, char('a' + i % 26)), 1u * i, {}};
        std::memset(o->bytes, i & 0xff, sizeof o->bytes);
        CHECK(reinterpret_cast<std::uintptr_t>(o) % alignof(Object) == 0);
        CHECK(seen.insert(o).second);
        live.push_back(o);
    }
    // Writing one object never touched another.
    for (int i = 0; i < 1000; ++i) {
        CHECK(live[i]->number == std::uint64_t(i));
        CHECK(live[i]->text == std::string(50, char('a' + i % 26)));
        CHECK(live[i]->bytes[39] == char(i & 0xff));
    }
    // Chunks double from four blocks up to 64: 4+8+16+32+64 = 124, then fourteen more of 64.
    CHECK(pool.chunks() == 19);

    Object* given_back = live[500];
    std::destroy_at(given_back);
    pool.deallocate(given_back);
    void* next = pool.allocate();
    CHECK(next == given_back);
    live[500] = ::new (next) Object{};

    CHECK(pool.in_use() == 1000);
    // Not while a block is in use: the objects in it would be freed under their owner.
    for (std::size_t i = 1; i < live.size(); ++i) {
        std::destroy_at(live[i]);
        pool.deallocate(live[i]);
        CHECK_FALSE(pool.release_if_unused());
    }
    CHECK(live[0]->number == 0);
    std::destroy_at(live[0]);
    pool.deallocate(live[0]);
    CHECK(pool.release_if_unused());
    CHECK(pool.chunks() == 0);
    // Usable again after a release, starting small.
    auto* again = ::new (pool.allocate()) Object{"again", 1, {}};
    CHECK(again->text == "again");
    CHECK(pool.chunks() == 1);
    std::destroy_at(again);
    pool.deallocate(again);
}
