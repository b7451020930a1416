// Failures as exceptions that keep their Receipt: with_receipt(token) turns a send's
// void(error_code, Receipt) into void(std::exception_ptr, Receipt), the exception a SendError.
// So `co_await d.async_send(m)` (whose default token is with_receipt(asio::use_awaitable)) throws a
// SendError that still says what the service said, how many attempts were made, and where a
// staged payload went — what a plain boost::system::system_error would lose.
#pragma once

#include <outbox/receipt.hpp>

#include <boost/asio/associator.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/system/system_error.hpp>

#include <exception>
#include <string>
#include <type_traits>
#include <utility>

namespace outbox {

/// A failed send: the error (code(), what()) and the Receipt it completed with.
class SendError : public boost::system::system_error {
  public:
    SendError(boost::system::error_code ec, Receipt receipt)
        : boost::system::system_error(base(ec, receipt)), receipt_(std::move(receipt)) {}

    /// Diagnostics (the service's code and message, the HTTP status, the request id),
    /// attempts, and the staged URL when the payload was staged before the failure.
    const Receipt& receipt() const noexcept { return receipt_; }

  private:
    // what(): "CODE: message: " (what the service and outbox said) before the error's own
    // message, or the error's message alone when there is nothing more.
    static boost::system::system_error base(const boost::system::error_code& ec, const Receipt& r) {
        std::string said = r.diagnostics.code;
        if (!r.diagnostics.message.empty())
            said += (said.empty() ? "" : ": ") + r.diagnostics.message;
        return said.empty() ? boost::system::system_error(ec)
                            : boost::system::system_error(ec, said);
    }

    Receipt receipt_;
};

/// The token adapter: pass with_receipt(token) where a void(error_code, Receipt) operation
/// takes a token. `token` then sees void(std::exception_ptr, Receipt), the exception a
/// SendError (null on success).
template <class CompletionToken>
struct with_receipt_t {
    CompletionToken token;
};

template <class CompletionToken>
with_receipt_t<std::decay_t<CompletionToken>> with_receipt(CompletionToken&& token) {
    return {std::forward<CompletionToken>(token)};
}

namespace detail {

// The handler the operation sees: turns an error into a SendError, and answers every
// association (executor, allocator, cancellation slot) as the wrapped handler does.
template <class Handler>
struct ReceiptHandler {
    Handler handler;

    void operator()(boost::system::error_code ec, Receipt receipt) {
        std::exception_ptr error;
        if (ec) {
            try {
                error = std::make_exception_ptr(SendError(ec, receipt));
            } catch (...) {  // no memory for the exception: still complete, with that
                error = std::current_exception();
            }
        }
        std::move(handler)(std::move(error), std::move(receipt));
    }
};

// The initiation the adapted token is given: it runs the operation's own initiation with a
// ReceiptHandler, and keeps the operation's executor visible.
template <class Initiation>
struct ReceiptInitiation {
    Initiation initiation;

    auto get_executor() const noexcept requires requires(const Initiation& i) { i.get_executor(); }
    { return initiation.get_executor(); }

    template <class Handler, class... Args>
    void operator()(Handler&& handler, Args&&... args) && {
        std::move(initiation)(ReceiptHandler<std::decay_t<Handler>>{std::forward<Handler>(handler)},
                              std::forward<Args>(args)...);
    }
};

}  // namespace detail
}  // namespace outbox

template <class CompletionToken>
struct boost::asio::async_result<outbox::with_receipt_t<CompletionToken>,
                                 void(boost::system::error_code, outbox::Receipt)> {
    template <class Initiation, class RawToken, class... Args>
    static auto initiate(Initiation&& initiation, RawToken&& token, Args&&... args) {
        // A const adapter holds a const token: async_initiate is told so.
        using Inner = std::conditional_t<std::is_const_v<std::remove_reference_t<RawToken>>,
                                         const CompletionToken, CompletionToken>;
        return boost::asio::async_initiate<Inner, void(std::exception_ptr, outbox::Receipt)>(
            outbox::detail::ReceiptInitiation<std::decay_t<Initiation>>{
                std::forward<Initiation>(initiation)},
            token.token, std::forward<Args>(args)...);
    }
};

template <template <class, class> class Associator, class Handler, class DefaultCandidate>
struct boost::asio::associator<Associator, outbox::detail::ReceiptHandler<Handler>,
                               DefaultCandidate> : Associator<Handler, DefaultCandidate> {
    static typename Associator<Handler, DefaultCandidate>::type get(
        const outbox::detail::ReceiptHandler<Handler>& h) noexcept {
        return Associator<Handler, DefaultCandidate>::get(h.handler);
    }
    static auto get(const outbox::detail::ReceiptHandler<Handler>& h,
                    const DefaultCandidate& c) noexcept
        -> decltype(Associator<Handler, DefaultCandidate>::get(h.handler, c)) {
        return Associator<Handler, DefaultCandidate>::get(h.handler, c);
    }
};
