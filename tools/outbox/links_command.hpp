// `outbox links`: serves long-lived payload links (PayloadLinkService) until a signal.
#pragma once

namespace outbox::cli {

int run_links(int argc, char** argv);

}  // namespace outbox::cli
