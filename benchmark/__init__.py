"""rnn-ablation-bench: does BN, dropout or both help an RNN, LSTM or GRU, and at what speed cost?"""

__version__ = "0.1.0"
