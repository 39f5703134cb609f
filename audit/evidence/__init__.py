"""The statistics behind every rollout decision, pure (numbers in, numbers out; no database).

scipy.stats does the mathematics; these modules choose the methods and say why:

- `proportions`: a rate with its Wilson interval, the difference of two rates with Newcombe's
  interval and Fisher's exact p-value, and how many more observations would detect a difference;
- `distributions`: two samples of scores or latencies compared (Mann-Whitney U with its effect
  size, Kolmogorov-Smirnov) and the ratio of their p95 with a distribution-free interval;
- `sequential`: the rollout guard's tests, which stay valid however often it looks (a mixture
  sequential probability ratio test for a rate, and the confidence sequence it implies);
- `comparison`: one health figure set against another, with all of the above.
"""
