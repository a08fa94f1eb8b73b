"""The scanner: book changes in, strategy decisions out. Who does what:

- scanner.py   `Scanner`: the scan loop (changed books -> their bases -> screens -> `evaluate` -> decisions),
               the opportunity counter, and `run` (the store's dirty set, conflated).
- screens.py   `ScreenIndex`: every base's incremental entry screens, the Python/C choice of their products
               (`PyTops` or the C `Tops` from tops.py) and their refresh; the funding verdicts.
- held.py      `HeldTrades`: the open trades by base, the books they leave free, who may exit them now.
- protocol.py  `Strategy` and `Screens` (what a strategy declares it can screen), `OpenTrade`, `MarketView`,
               `FundingMap`, `held_keys` (no entry reuses a held venue/symbol).
- edges.py     two-leg quotes, sizes and closes shared by the strategies; depth.py: exact sweeps and lot grids.
"""
