"""jumpstarter's DutNetwork driver backed by dutnet (`jumpstarter_driver_dutnet.driver.DutNetwork`)."""
