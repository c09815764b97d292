"""What ships: the winner chosen and exported in its formats with its card; ensembles."""
