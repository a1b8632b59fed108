"""The actor-context feature bank: what it stores per actor, its extraction from a trained ACAR run, and its windows in
the batches."""
