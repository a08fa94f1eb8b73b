"""Scanner stage: strategies over changed books, with fee/depth/funding-aware edges."""
