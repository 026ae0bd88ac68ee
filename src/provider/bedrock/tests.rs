//! Unit tests of the Bedrock translation against the recorded fixtures.
