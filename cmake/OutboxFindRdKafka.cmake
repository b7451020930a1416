# outbox::rdkafka: librdkafka's C library, whichever way it is installed. Conan (and
# librdkafka's own CMake build) ship a package config with RdKafka::rdkafka; Debian ships
# only rdkafka.pc. Look for the config first, then pkg-config. Used by the build and by the
# installed outboxConfig.cmake alike.
if(NOT TARGET outbox::rdkafka)
    find_package(RdKafka CONFIG QUIET)
    add_library(outbox::rdkafka INTERFACE IMPORTED)
    if(TARGET RdKafka::rdkafka)
        target_link_libraries(outbox::rdkafka INTERFACE RdKafka::rdkafka)
    else()
        find_package(PkgConfig REQUIRED)
        pkg_check_modules(OUTBOX_RDKAFKA REQUIRED IMPORTED_TARGET rdkafka>=2.0)
        target_link_libraries(outbox::rdkafka INTERFACE PkgConfig::OUTBOX_RDKAFKA)
    endif()
endif()
