"""Risk stage: pure rules, the gate that mints ApprovedOrders, and the trading-state machine."""
