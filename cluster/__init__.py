"""Running the heavy steps on a cluster engine (Apache Spark), chosen by settings."""
