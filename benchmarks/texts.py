"""Texts the benchmarks render: long enough to fill minutes, plain enough for any voice."""

SENTENCES = [
    "The old lighthouse stood at the edge of the cliff for more than a century.",
    "Every night its keeper climbed the narrow stairs and lit the great lamp.",
    "Ships far out at sea looked for its steady beam and turned away from the rocks.",
    "In winter the wind howled around the tower and the waves struck the stones below.",
    "In summer the keeper painted the rails and watched the gulls above the water.",
    "Nobody remembers his name, but the sailors who came home never forgot the light.",
    "Today the lamp is automatic, and visitors walk up the stairs to look at the view.",
    "They read the old logbooks and wonder what those long nights were like.",
]
