//! Loading and validating providers.json and routing.json.
