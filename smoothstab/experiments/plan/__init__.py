"""What a config will cost before it runs: counts of training steps, model evaluations
and bytes, a time estimate for this machine, the plan composed and printed.
"""
