"""The development stack: real Redis, the test database (``mongod``, else FerretDB on a private
PostgreSQL cluster), presence workers and nginx, started and stopped the same way by the tests,
the benchmarks and ``make cluster``. Not part of the shipped package."""
