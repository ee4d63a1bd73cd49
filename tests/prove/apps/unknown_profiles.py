"""What a team ships for its own client type: a module that registers its profile
(``prove --profiles tests.prove.apps.unknown_profiles``)."""

from safeclients import profiles

profiles.register(
    profiles.Profile(
        qualname="tests.prove.apps._fake.UnknownClient",
        reason="Our in-house client keeps one socket and no lock.",
        suggest="pooled",
        sources=(),
    )
)
