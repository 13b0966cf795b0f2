// rs.initiate for the 3-member replica set (run once by the mongo-init job); idempotent.
try {
  rs.status();
  print("replica set already initiated");
} catch (e) {
  rs.initiate({
    _id: "rs0",
    members: [
      { _id: 0, host: "mongo-0:27017" },
      { _id: 1, host: "mongo-1:27017" },
      { _id: 2, host: "mongo-2:27017" },
    ],
  });
  print("replica set rs0 initiated");
}
