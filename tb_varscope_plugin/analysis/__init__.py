"""Analysis of an index: collisions, tag-name forms, the assignment solver, lane attribution, layer groups."""
