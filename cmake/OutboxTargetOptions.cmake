# Warnings and sanitizers for outbox's own targets only: nothing global, nothing that
# leaks into a consumer's build through the exported targets.
include(CheckLinkerFlag)
if(OUTBOX_LINK_WITH_LLD)
    check_linker_flag(CXX -fuse-ld=lld OUTBOX_LLD_WORKS)
    if(NOT OUTBOX_LLD_WORKS)
        message(STATUS "outbox: lld not found (Debian: lld); linking with the default linker")
        unset(OUTBOX_LLD_WORKS CACHE)  # checked again next time: lld may be installed by then
    endif()
endif()

function(outbox_target_options target)
    set_target_properties(${target} PROPERTIES CXX_EXTENSIONS OFF)
    if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
        target_compile_options(${target} PRIVATE
            -Wall -Wextra -Wpedantic -Wshadow -Wnon-virtual-dtor -Woverloaded-virtual
            -Wcast-align -Wimplicit-fallthrough
            $<$<BOOL:${OUTBOX_WARNINGS_AS_ERRORS}>:-Werror>)
        if(OUTBOX_SANITIZE)
            target_compile_options(${target} PRIVATE -fsanitize=${OUTBOX_SANITIZE} -fno-omit-frame-pointer)
            # Undefined behaviour fails the test instead of printing a line and going on.
            if(OUTBOX_SANITIZE MATCHES "undefined")
                target_compile_options(${target} PRIVATE -fno-sanitize-recover=undefined)
                # Clang 14 cannot place -fsanitize=function's prologue data in a coroutine's
                # split parts ("Cannot represent a difference across sections").
                if(CMAKE_CXX_COMPILER_ID MATCHES "Clang")
                    target_compile_options(${target} PRIVATE -fno-sanitize=function)
                endif()
            endif()
            # GCC warns that TSan does not model the fences inside Asio; that is Asio's code, not ours.
            if(OUTBOX_SANITIZE MATCHES "thread" AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
                target_compile_options(${target} PRIVATE -Wno-tsan)
            endif()
            target_link_options(${target} PRIVATE -fsanitize=${OUTBOX_SANITIZE})
        endif()
        # The fuzz targets' coverage and checks reach into the library only if the library is
        # instrumented too: without it libFuzzer sees the target's own file, and ASan none of
        # the parsers' reads.
        get_target_property(kind ${target} TYPE)
        if(OUTBOX_BUILD_FUZZERS AND kind MATCHES "LIBRARY" AND CMAKE_CXX_COMPILER_ID MATCHES "Clang")
            target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link)
        endif()
        # The test programs each link the whole library with its debug information; lld does
        # that in a third of the time GNU ld takes. PRIVATE: never exported to consumers.
        if(OUTBOX_LINK_WITH_LLD AND OUTBOX_LLD_WORKS)
            target_link_options(${target} PRIVATE -fuse-ld=lld)
        endif()
    endif()
endfunction()
