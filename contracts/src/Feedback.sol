// SPDX-License-Identifier: Apache-2.0
pragma solidity 0.8.28;

import {Membership, Roles} from "./Membership.sol";
import {Activity} from "./Activity.sol";
import {CtiMarket} from "./CtiMarket.sol";
import {Tasks} from "./Tasks.sol";

/// Verified feedback: one verdict per finished task, only by the consumer who used the token:
/// a rating (1..5), or a dispute when the delivered data does not hash to the listing's
/// contentHash; and at most one like per organization per CTI (never by the publisher org).
contract Feedback {
    Membership public immutable membership;
    CtiMarket public immutable market;
    Tasks public immutable tasks;
    Activity public immutable activity;

    mapping(uint256 => uint8) public ratingOf; // task id -> 1..5, 0 = none
    mapping(uint256 => uint256) public ratingSum; // token id -> sum of ratings
    mapping(uint256 => uint256) public ratingCount; // token id -> number of ratings
    mapping(uint256 => uint256) public likes; // token id -> likes
    mapping(uint256 => mapping(uint32 => bool)) public liked; // token id -> org -> liked
    mapping(uint256 => bytes32) public disputeOf; // task id -> keccak of what the consumer received, 0 = none

    event Rated(uint256 indexed taskId, uint256 indexed tokenId, uint32 indexed consumerOrg, uint8 rating, string comment);
    event Liked(uint256 indexed tokenId, uint32 indexed org, address account);
    event Disputed(
        uint256 indexed taskId,
        uint256 indexed tokenId,
        uint32 indexed consumerOrg,
        bytes32 listedHash,
        bytes32 receivedHash,
        string reason
    );

    error BadRating(uint8 rating);
    error NotFinished(uint256 taskId);
    error NotTaskConsumer(address account, uint256 taskId);
    error AlreadyRated(uint256 taskId);
    error AlreadyLiked(uint256 tokenId, uint32 org);
    error OwnListing(uint256 tokenId, uint32 org);
    error AlreadyDisputed(uint256 taskId);
    error NotAMismatch(uint256 taskId, bytes32 receivedHash);

    constructor(Membership membership_, CtiMarket market_, Tasks tasks_, Activity activity_) {
        membership = membership_;
        market = market_;
        tasks = tasks_;
        activity = activity_;
    }

    function rate(uint256 taskId, uint8 rating, string calldata comment) external {
        membership.requireRole(msg.sender, Roles.CONSUMER);
        (uint256 tokenId, uint32 consumerOrg, uint32 publisherOrg) = _ratable(taskId, rating);
        ratingOf[taskId] = rating;
        ratingSum[tokenId] += rating;
        ratingCount[tokenId] += 1;
        emit Rated(taskId, tokenId, consumerOrg, rating, comment);
        _count(Activity.Kind.FeedbackGiven, consumerOrg, Activity.Kind.FeedbackReceived, publisherOrg, tokenId, taskId);
    }

    /// The consumer received data whose keccak256 (`receivedHash`) is not the listing's
    /// contentHash: recorded instead of a rating, with the reason, and counted for both orgs.
    function dispute(uint256 taskId, bytes32 receivedHash, string calldata reason) external {
        membership.requireRole(msg.sender, Roles.CONSUMER);
        (uint256 tokenId, uint32 consumerOrg, uint32 publisherOrg) = _ratable(taskId, 1);
        bytes32 listed = market.listing(tokenId).contentHash;
        if (receivedHash == listed || receivedHash == bytes32(0)) revert NotAMismatch(taskId, receivedHash);
        disputeOf[taskId] = receivedHash;
        emit Disputed(taskId, tokenId, consumerOrg, listed, receivedHash, reason);
        _count(Activity.Kind.DisputeRaised, consumerOrg, Activity.Kind.DisputeReceived, publisherOrg, tokenId, taskId);
    }

    function like(uint256 tokenId) external {
        uint32 org = membership.requireRole(msg.sender, Roles.CONSUMER);
        uint32 publisherOrg = market.listingOrg(tokenId);
        if (publisherOrg == org) revert OwnListing(tokenId, org);
        if (liked[tokenId][org]) revert AlreadyLiked(tokenId, org);
        liked[tokenId][org] = true;
        likes[tokenId] += 1;
        emit Liked(tokenId, org, msg.sender);
        _count(Activity.Kind.LikeGiven, org, Activity.Kind.LikeReceived, publisherOrg, tokenId, 0);
    }

    function _ratable(uint256 taskId, uint8 rating)
        private
        view
        returns (uint256 tokenId, uint32 consumerOrg, uint32 publisherOrg)
    {
        address consumer;
        Tasks.State state;
        (tokenId, consumer, consumerOrg, publisherOrg, state) = tasks.outcome(taskId);
        if (consumer != msg.sender) revert NotTaskConsumer(msg.sender, taskId);
        if (state != Tasks.State.Finished) revert NotFinished(taskId);
        if (ratingOf[taskId] != 0) revert AlreadyRated(taskId);
        if (disputeOf[taskId] != bytes32(0)) revert AlreadyDisputed(taskId);
        if (rating == 0 || rating > 5) revert BadRating(rating);
    }

    function _count(Activity.Kind given, uint32 giver, Activity.Kind received, uint32 receiver, uint256 tokenId, uint256 taskId)
        private
    {
        activity.record2(given, giver, 1, received, receiver, 1, tokenId, taskId, msg.sender);
    }
}
