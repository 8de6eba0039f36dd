"""memgate observer: turns completed exchanges into dated, prioritised observations."""
