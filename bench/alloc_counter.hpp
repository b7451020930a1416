// Counts heap allocations made through global operator new, for allocs-per-op figures.
#pragma once

namespace outbox::bench {

long allocation_count() noexcept;

}  // namespace outbox::bench
