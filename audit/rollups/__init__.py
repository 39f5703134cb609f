"""The prediction log summed per minute and per hour, written with it, so that reads over a window
cost its minutes and not its rows.

- `figures`: what a rollup counts of a set of rows (`Figures`, per `Key`), and the outcome rule;
- `histograms`: the fixed latency and score buckets, and the percentiles read back from them;
- `store`: adding figures to the stored rollups inside the transaction that inserted the rows
  (`roll_up`, called by `audit.logstore`), exactly once per row;
- `services`: keeping them equal to the rows when outcomes arrive, on rebuild and on retention;
- `selectors`: the figures of a window, for `audit.selectors.health` and everything built on it.

Raw rows stay the record: export, backtests, drift, samples for two-sample tests and segments read them.
"""
