"""Data acquisition: seed the two flight databases, join them into a profiled training set.

Modules by responsibility (importing this package loads none of them):

- `identifiers`: table/column name validation and month table templates.
- `databases`: source URLs, engines, clear connection errors, Arrow-native (ADBC) drivers.
- `sources`: ``mlgov sources seed`` (nycflights13 month tables into any SQLAlchemy database).
- `readers`: resolve a source's tables and columns, stream it as Arrow batches (ADBC or SQLAlchemy).
- `join`: streaming sorted-merge join of the two sides on an integer key.
- `profile`: streaming column profile (JSON) and the readable HTML profile (evidently).
- `quality`: the documented rule set that turns a profile into the quality flag.
- `pipeline`: the acquisition itself (read, join, profile, atomic Parquet write).
- `dataset`: the MLflow dataset of the training set (MLflow's pandas digest, bounded memory).
- `jdbc`: the Spark engine's JDBC URLs and driver jars (Debian's, or IBM's given by the user).
- `spark_engine`: the acquisition on Apache Spark (JDBC partitions, Spark join, the same output file).
- `spark_profile`: the profile and join counts as Spark aggregations (the same content as `profile`).
- `step`: the MLflow run around the pipeline and the governance record (CLI and MLproject).

Owns: reading, joining, checking, profiling and cataloguing the source data, and its governance
record. May import: the core, safe, airline and the client; nothing above (no training or
feature above it).
"""
