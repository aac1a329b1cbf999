// How an Item is stored: as stream fields (readable with redis-cli XRANGE) and as a JSON
// document (the retry set's value). Shared by the Redis and in-memory queues so both hand back
// the same Items.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "scimsync/queue/queue.h"
#include "scimsync/redis/keys.h"
#include "scimsync/result.h"

namespace scimsync::queue {
// The queue's own keys, from the one schema.
namespace Keys = redis::keys::queue;
}  // namespace scimsync::queue

namespace scimsync::queue::internal {

// Field names of the stream entry, in the order StreamValues() returns their values.
const std::vector<std::string>& StreamFieldNames();
// Values of a new stream entry (attempts is stored only when not 0).
std::vector<std::string> StreamValues(const Item& item);
// Name/value pairs: the stream fields plus attempts, partition, entry_id and last_error, for a
// dead letter or a replay.
void AppendItemPairs(const Item& item, std::vector<std::string>* out);

// Builds an Item from an entry's field/value map. Unknown fields are ignored; missing ones stay
// at their defaults.
Item ItemFromFields(const std::map<std::string, std::string>& fields);

std::string ItemToJson(const Item& item);
Result<Item> ItemFromJson(const std::string& json);

DeadLetterEntry DeadLetterFromFields(const std::string& id,
                                     const std::map<std::string, std::string>& fields);
void AppendDeadLetterPairs(const Item& item, const std::string& error_kind,
                           const std::string& reason, const std::string& last_request,
                           const std::string& last_response, int64_t dead_at_ms,
                           std::vector<std::string>* out);

Status CheckPartition(int partition, int partitions);

}  // namespace scimsync::queue::internal
